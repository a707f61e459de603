"""CoAtNet blocks and the nano model against a torch reference written from timm's semantics:
the same state_dict in both, float64, outputs, input gradients and parameter gradients."""
import numpy as np
import pytest
import torch

from refvit import Tensor
from refvit.models import create_model
from refvit.nn.coatnet import MbConvBlock, TransformerBlock2d
from refvit.testing import assert_close
from refvit.torch_ports import coatnet as reference


TOL = dict(rtol=1e-8, atol=1e-10)


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def randomize(module, rng, scale=0.3):
    """Random parameters and running statistics, so no part of the block is at its initial value."""
    for name, value in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "pre_norm.weight")):
            value[...] = 1.0 + 0.2 * rng.standard_normal(value.shape)
        else:
            value[...] = scale * rng.standard_normal(value.shape)


def torch_state(module):
    parameters = {name for name, _ in module.named_parameters()}
    return {k: torch.tensor(v.copy(), requires_grad=k in parameters) for k, v in module.state_dict().items()}


def compare(module, torch_forward, x, rng, parameters=None):
    """Run ours and torch's on ``x (B, H, W, C)`` with one random upstream gradient; compare everything."""
    sd = torch_state(module)
    x_ours = Tensor(x, requires_grad=True)
    out = module(x_ours)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    x_torch = torch.tensor(nchw(x) if x.ndim == 4 else x, requires_grad=True)
    expected = torch_forward(x_torch, sd)
    expected_nhwc = expected.detach().numpy()
    expected_nhwc = nhwc(expected_nhwc) if expected_nhwc.ndim == 4 else expected_nhwc
    expected.backward(torch.tensor(nchw(upstream) if upstream.ndim == 4 else upstream))
    assert_close(out.data, expected_nhwc, name="output", **TOL)
    assert_close(x_ours.grad, nhwc(x_torch.grad.numpy()), name="input gradient", **TOL)
    names = parameters or [name for name, _ in module.named_parameters()]
    ours = dict(module.named_parameters())
    for name in names:
        assert_close(ours[name].grad, sd[name].grad.numpy(), name=f"d {name}", **TOL)
    return sd


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_mbconv_matches_torch(stride, training, rng):
    block = MbConvBlock(6 if stride == 2 else 8, 8, stride=stride, dtype=np.float64)
    randomize(block, rng)
    block.train(training)
    x = rng.standard_normal((2, 6, 6, block.in_chs))
    sd = compare(block, lambda t, sd: reference.mbconv(t, sd, "", stride, training), x, rng)
    for name, value in block.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            assert_close(value, sd[name].numpy(), name=name, **TOL)


@pytest.mark.parametrize("stride", [1, 2])
def test_transformer_block_matches_torch(stride, rng):
    dim, size = (16, 3) if stride == 2 else (32, 3)
    block = TransformerBlock2d(dim, 32, (size, size), stride=stride, dim_head=16, dtype=np.float64)
    randomize(block, rng)
    x = rng.standard_normal((2, size * stride, size * stride, dim))
    compare(block, lambda t, sd: reference.transformer_block(t, sd, "", stride), x, rng)


def test_head_first_qkv_layout(rng):
    """Channel 3*d*h + j of qkv is query feature j of head h, 3*d*h + d + j the key, + 2d the value."""
    block = TransformerBlock2d(32, 32, (2, 2), dim_head=16, dtype=np.float64)
    qkv = rng.standard_normal((1, 2, 2, 96))
    q, k, v = (piece.data for piece in block.attn.split_heads(Tensor(qkv)))
    per_head = qkv.reshape(1, 4, 2, 48)
    assert_close(q, per_head[..., :16].transpose(0, 2, 1, 3))
    assert_close(k, per_head[..., 16:32].transpose(0, 2, 1, 3))
    assert_close(v, per_head[..., 32:].transpose(0, 2, 1, 3))


def test_coatnet_nano_matches_torch(rng):
    model = create_model("coatnet_nano", dtype=np.float64)
    randomize(model, rng, scale=0.2)
    model.eval()
    x = rng.standard_normal((2, 32, 32, 3))
    cfg = model.cfg
    checked = ["stem.conv1.weight", "stages.0.blocks.0.se.fc1.weight", "stages.1.blocks.0.shortcut.expand.weight",
               "stages.2.blocks.0.attn.rel_pos.relative_position_bias_table", "stages.2.blocks.1.attn.qkv.weight",
               "stages.3.blocks.0.mlp.fc2.bias", "head.pre_logits.fc.weight", "head.fc.bias"]
    compare(model, lambda t, sd: reference.coatnet(t, sd, cfg.depths, cfg.block_types), x, rng, checked)


def test_relative_position_index_matches_timm_construction():
    from refvit.ops.relative_position_bias import relative_position_index

    for window in [(1, 1), (2, 3), (4, 4), (7, 5)]:
        expected = reference.relative_position_index(*window).numpy()
        np.testing.assert_array_equal(relative_position_index(window).reshape(-1), expected)
