"""SMT against the official semantics written in PyTorch (refvit/torch_ports/smt.py): same
state_dict, same outputs, input gradients, parameter gradients and BatchNorm running statistics."""
import numpy as np
import pytest
import torch

from refvit.autograd import Tensor
from refvit.models import create_model
from refvit.nn.smt import SMTBlock
from refvit.testing import assert_close
from refvit.torch_ports import smt as reference


def randomise(module, rng):
    """Non-trivial values for every parameter and running statistic (the init's ones/zeros hide bugs)."""
    for name, parameter in module.named_parameters():
        fan_in = parameter.size // parameter.shape[0] if parameter.ndim >= 2 else 1
        parameter.data[...] = rng.standard_normal(parameter.shape) / np.sqrt(fan_in)
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("bn.weight"):
            parameter.data[...] = rng.uniform(0.5, 1.5, parameter.shape)
    for name, buffer in module.named_buffers():
        if name.endswith("running_mean"):
            buffer[...] = 0.1 * rng.standard_normal(buffer.shape)
        elif name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)


def torch_state(module):
    """The module's state as torch tensors; float parameters are leaves that collect gradients."""
    parameters = {name for name, _ in module.named_parameters()}
    return {key: torch.tensor(value.copy(), requires_grad=key in parameters)
            for key, value in module.state_dict().items()}


def compare(ours_out, x_ours, module, theirs_out, x_theirs, sd, to_ours, names=None):
    assert_close(ours_out.data, to_ours(theirs_out.detach().numpy()), name="output")
    assert_close(x_ours.grad, to_ours(x_theirs.grad.numpy()), name="input gradient")
    for name, parameter in module.named_parameters():
        if names is None or name in names:
            assert_close(parameter.grad, sd[name].grad.numpy(), name=f"d{name}")


def tokens(x_map):
    """(B, H, W, C) -> the official token layout (B, N, C)."""
    return x_map.reshape(x_map.shape[0], -1, x_map.shape[-1])


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("ca_attention", [1, 0], ids=["modulation", "self_attention"])
def test_block_matches_official(ca_attention, training, rng):
    batch, height, width, dim = 2, 5, 6, 16  # a non-square map catches H/W mix-ups
    block = SMTBlock(dim, 4, 4, mlp_ratio=2.0, qkv_bias=True, ca_attention=ca_attention, dtype=np.float64)
    randomise(block, rng)
    block.train(training)
    sd = torch_state(block)
    x = rng.standard_normal((batch, height, width, dim))
    upstream = rng.standard_normal(x.shape)

    x_ours = Tensor(x, requires_grad=True)
    out = block(x_ours)
    out.backward(upstream)
    x_theirs = torch.tensor(tokens(x), requires_grad=True)
    expected = reference.block(sd, "", x_theirs, height, width, 4, training)
    expected.backward(torch.tensor(tokens(upstream)))
    compare(out, x_ours, block, expected, x_theirs, sd, lambda a: a.reshape(x.shape))
    if ca_attention == 1:
        for key in ("attn.bn.running_mean", "attn.bn.running_var"):
            assert_close(block.state_dict()[key], sd[key].numpy(), name=key)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_smt_nano_matches_official(training, rng):
    model = create_model("smt_nano", dtype=np.float64)
    randomise(model, rng)
    model.train(training)
    sd = torch_state(model)
    images = rng.standard_normal((2, 32, 32, 3))
    upstream = rng.standard_normal((2, 10))

    x_ours = Tensor(images, requires_grad=True)
    logits = model(x_ours)
    logits.backward(upstream)
    x_theirs = torch.tensor(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), requires_grad=True)
    expected = reference.model(sd, x_theirs, sa_heads=(-1, -1, 4, 8), training=training)
    expected.backward(torch.tensor(upstream))
    assert_close(logits.data, expected.detach().numpy(), name="logits")
    assert_close(x_ours.grad, x_theirs.grad.numpy().transpose(0, 2, 3, 1), name="input gradient")
    for name, parameter in model.named_parameters():
        assert_close(parameter.grad, sd[name].grad.numpy(), name=f"d{name}")
    for name, buffer in model.named_buffers():
        if not name.endswith("num_batches_tracked"):  # torch's functional batch_norm does not count
            assert_close(buffer, sd[name].numpy(), name=name)


def test_smt_tiny_loads_a_torch_state_dict(rng):
    """Keys, shapes and dtypes of a torch state_dict built from the official names load as they are."""
    model = create_model("smt_tiny")
    state = {key: torch.from_numpy(rng.standard_normal(value.shape).astype(np.float32))
             if value.dtype != np.int64 else torch.tensor(7) for key, value in model.state_dict().items()}
    model.load_state_dict(state)
    loaded = model.block3.state_dict()["1.attn.local_conv.weight"]
    assert_close(loaded, state["block3.1.attn.local_conv.weight"].numpy())
    assert int(model.block1[0].attn.bn.num_batches_tracked) == 7


def test_bench_cases_torch_equivalent_matches_the_op():
    from refvit import ops
    from refvit.bench.cases_smt import CASES

    for case in CASES:
        args, kwargs = case.make(np.random.default_rng(0), np.float64)
        expected, _ = ops.multiscale_dwconv.forward(*args, **kwargs, backend="numpy")
        with torch.no_grad():
            got = case.torch_forward(args, kwargs)().numpy().transpose(0, 2, 3, 1)
        assert_close(got, expected, name=case.name)
        assert case.flops(args, kwargs) > 0
