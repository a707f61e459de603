"""NAT / DiNAT modules against a PyTorch NAT written from the official semantics (refvit/torch_ports/dinat.py):
the same state_dict in both, float64, outputs and gradients of the input and the parameters."""
import numpy as np
import pytest
import torch

from refvit.autograd import Tensor
from refvit.models import create_model
from refvit.models.dinat import NANO, dinat_dilations
from refvit.nn.nat import NATLayer, NeighborhoodAttention2D
from refvit.testing import assert_close

from refvit.torch_ports import dinat as dinat_torch


def run_both(ours, theirs, x, upstream, their_input=None):
    """Forward and backward through both modules; returns (our output, our input grad, theirs, their input grad)."""
    x_ours = Tensor(x, requires_grad=True)
    out = ours(x_ours)
    out.backward(upstream)
    x_torch = torch.tensor(x, requires_grad=True) if their_input is None else their_input
    expected = theirs(x_torch)
    expected.backward(torch.tensor(upstream))
    return out.data, x_ours.grad, expected.detach().numpy(), x_torch.grad.numpy()


def assert_parameter_grads(ours, theirs, label, keys=None):
    theirs_params = dict(theirs.named_parameters())
    for key, parameter in ours.named_parameters():
        if keys is None or key in keys:
            assert_close(parameter.grad, theirs_params[key].grad.numpy(), name=f"{label}: d{key}")


@pytest.mark.parametrize("height, width, kernel_size, dilation, heads", [
    (5, 6, 3, 1, 2),    # border windows shift inward
    (7, 9, 3, 2, 1),    # DiNA, groups of unequal length (9 = 2*4 + 1)
    (11, 10, 5, 2, 2),  # DiNA with k = 5, right-border groups of both lengths
    (4, 5, 3, 2, 2),    # small map: padded to 6 x 6
    (2, 2, 3, 1, 1),    # small map: padded to 3 x 3 (a nano model's last level)
])
def test_attention_matches_torch(rng, height, width, kernel_size, dilation, heads):
    dim = 4 * heads
    label = f"NA {height}x{width} k={kernel_size} d={dilation}"
    theirs = dinat_torch.randomise(dinat_torch.NeighborhoodAttention2D(dim, heads, kernel_size, dilation), seed=3)
    ours = NeighborhoodAttention2D(dim, heads, kernel_size, dilation=dilation, dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(dinat_torch.state_numpy(theirs))
    x = rng.standard_normal((2, height, width, dim))
    out, dx, expected, expected_dx = run_both(ours, theirs, x, rng.standard_normal(x.shape))
    assert_close(out, expected, name=f"{label}: output")
    assert_close(dx, expected_dx, name=f"{label}: input gradient")
    assert_parameter_grads(ours, theirs, label)


@pytest.mark.parametrize("layer_scale", [None, 0.5])
def test_layer_matches_torch(rng, layer_scale):
    theirs = dinat_torch.randomise(dinat_torch.NATLayer(8, 2, 3, 2, mlp_ratio=3.0, layer_scale=layer_scale), seed=4)
    ours = NATLayer(8, 2, kernel_size=3, dilation=2, mlp_ratio=3.0, layer_scale=layer_scale, dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(dinat_torch.state_numpy(theirs))
    x = rng.standard_normal((2, 6, 7, 8))
    out, dx, expected, expected_dx = run_both(ours, theirs, x, rng.standard_normal(x.shape))
    label = f"NATLayer layer_scale={layer_scale}"
    assert_close(out, expected, name=f"{label}: output")
    assert_close(dx, expected_dx, name=f"{label}: input gradient")
    assert_parameter_grads(ours, theirs, label)


def test_dinat_nano_matches_torch(rng):
    """The whole nano model (NA and DiNA layers, padded 2x2 last level); nat_nano is the same with dilation 1."""
    name, dilations = "dinat_nano", dinat_dilations(NANO["depths"], (2, 1, 1))
    theirs = dinat_torch.NAT(NANO["embed_dim"], NANO["mlp_ratio"], NANO["depths"], NANO["num_heads"],
                             NANO["kernel_size"], dilations)
    theirs = dinat_torch.randomise(theirs, seed=5, scale=0.15)  # moderate activations through the stack
    ours = create_model(name, dtype=np.float64).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(dinat_torch.state_numpy(theirs))
    images = rng.standard_normal((2, 32, 32, 3))
    x_torch = dinat_torch.nchw(images)
    logits, dx, expected, expected_dx = run_both(ours, theirs, images, rng.standard_normal((2, 10)), x_torch)
    assert_close(logits, expected, name=f"{name}: logits")
    assert_close(dx, expected_dx.transpose(0, 2, 3, 1), name=f"{name}: image gradient")
    assert_parameter_grads(ours, theirs, name, keys={
        "patch_embed.proj.0.weight", "patch_embed.norm.bias", "levels.0.blocks.1.attn.rpb",
        "levels.0.blocks.1.attn.qkv.weight", "levels.0.downsample.reduction.weight", "levels.1.blocks.0.mlp.fc1.bias",
        "levels.2.blocks.3.attn.rpb", "levels.2.blocks.2.attn.proj.weight", "norm.weight", "head.weight"})
