"""CSWin modules and models: official state_dict layout, numerics against a PyTorch CSWin written from
the official semantics (refvit/torch_ports/cswin.py), gradients, padding, branch geometry, bad input."""
import numpy as np
import pytest
import torch

import refvit
from refvit.autograd import Tensor
from refvit.models import create_model, list_models, model_info
from refvit.nn.cswin import CSWinBlock
from refvit.testing import assert_close, check_module_gradients

TINY = dict(embed_dim=64, depth=(1, 2, 21, 1), split_size=(1, 2, 7, 7), num_heads=(2, 4, 8, 16))
NANO = dict(embed_dim=32, depth=(1, 2, 2, 1), split_size=(2, 2, 1, 1), num_heads=(2, 4, 8, 16))


def official_shapes(img_size, num_classes, embed_dim, depth, split_size, num_heads, mlp_ratio=4):
    """Keys and shapes of the official CSWinTransformer, in registration order, from its structure."""
    shapes = {"stage1_conv_embed.0.weight": (embed_dim, 3, 7, 7), "stage1_conv_embed.0.bias": (embed_dim,),
              "stage1_conv_embed.2.weight": (embed_dim,), "stage1_conv_embed.2.bias": (embed_dim,)}
    dim = embed_dim
    for stage in range(4):
        if stage:
            merge = f"merge{stage}."
            shapes.update({merge + "conv.weight": (2 * dim, dim, 3, 3), merge + "conv.bias": (2 * dim,),
                           merge + "norm.weight": (2 * dim,), merge + "norm.bias": (2 * dim,)})
            dim *= 2
        branches = 1 if stage == 3 or img_size // 4 // 2 ** stage == split_size[stage] else 2
        for index in range(depth[stage]):
            block = f"stage{stage + 1}.{index}."
            shapes.update({block + "qkv.weight": (3 * dim, dim), block + "qkv.bias": (3 * dim,),
                           block + "norm1.weight": (dim,), block + "norm1.bias": (dim,),
                           block + "proj.weight": (dim, dim), block + "proj.bias": (dim,)})
            for branch in range(branches):
                lepe = f"{block}attns.{branch}.get_v."
                shapes.update({lepe + "weight": (dim // branches, 1, 3, 3), lepe + "bias": (dim // branches,)})
            hidden = int(dim * mlp_ratio)
            shapes.update({block + "mlp.fc1.weight": (hidden, dim), block + "mlp.fc1.bias": (hidden,),
                           block + "mlp.fc2.weight": (dim, hidden), block + "mlp.fc2.bias": (dim,),
                           block + "norm2.weight": (dim,), block + "norm2.bias": (dim,)})
    shapes.update({"norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (num_classes, dim),
                   "head.bias": (num_classes,)})
    return shapes


# ---------------------------------------------------------------- layout

def test_tiny_state_dict_equals_official_layout():
    model = create_model("cswin_tiny")
    expected = official_shapes(224, 1000, **TINY)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(expected)
    assert got == expected
    assert sum(int(np.prod(s)) for s in expected.values()) == sum(p.size for p in model.parameters())
    # stage 3 (14x14, split 7) has two stripe branches; stage 4 (7x7) one full-map branch
    assert model.stage3[0].branch_num == 2 and model.stage4[0].branch_num == 1
    assert model.stage1[0].attns[0].stripe_size(56, 56) == (56, 1)
    assert model.stage1[0].attns[1].stripe_size(56, 56) == (1, 56)


def test_registry_and_nano_layout():
    assert {"cswin_tiny", "cswin_nano"} <= set(list_models("cswin"))
    assert model_info("cswin_nano").img_size == 32 and model_info("cswin_tiny").img_size == 224
    model = create_model("cswin_nano")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_shapes(32, 10, **NANO)
    assert 3e5 < sum(p.size for p in model.parameters()) < 2e6
    branches = [block.branch_num for stage in range(1, 5) for block in getattr(model, f"stage{stage}")]
    assert branches == [2, 2, 2, 2, 2, 1]


def test_initialisation_follows_official():
    model = create_model("cswin_nano")
    weight = model.stage3[0].qkv.weight.data
    assert abs(float(weight.std()) - 0.02) < 0.003 and np.abs(weight).max() <= 2.0
    assert not model.stage3[0].qkv.bias.data.any() and not model.head.bias.data.any()
    assert (model.norm.weight.data == 1).all() and not model.norm.bias.data.any()


# ---------------------------------------------------------------- numerics against torch

def torch_block_case(dim, heads, split, branches, height, width, pad=False, seed=0):
    from refvit.torch_ports import cswin as cswin_torch

    torch.manual_seed(seed)
    theirs = cswin_torch.randomise(cswin_torch.Block(dim, heads, split, branches, pad=pad), seed)
    ours = CSWinBlock(dim, heads, split_size=split, last_stage=branches == 1, qkv_bias=True, pad_to_stripes=pad,
                      dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(cswin_torch.state_numpy(theirs))
    return ours, theirs


@pytest.mark.parametrize("name, dim, heads, split, branches, height, width, pad", [
    ("stripes of width 1 (stage 1)", 8, 2, 1, 2, 4, 4, False),
    ("stripes of width 2, 4 heads", 16, 4, 2, 2, 4, 6, False),
    ("full map (last stage)", 8, 2, 7, 1, 3, 5, False),
    ("padded stripes (segmentation): pads 2 and 3", 8, 2, 4, 2, 5, 6, True),
])
def test_block_matches_torch(rng, name, dim, heads, split, branches, height, width, pad):
    ours, theirs = torch_block_case(dim, heads, split, branches, height, width, pad)
    x = rng.standard_normal((2, height, width, dim))
    upstream = rng.standard_normal(x.shape)
    x_ours = Tensor(x, requires_grad=True)
    out = ours(x_ours)
    out.backward(upstream)
    x_torch = torch.tensor(x.reshape(2, height * width, dim), requires_grad=True)
    expected = theirs(x_torch, height, width)
    expected.backward(torch.tensor(upstream.reshape(expected.shape)))
    assert_close(out.data, expected.detach().numpy().reshape(x.shape), name=f"{name}: output")
    assert_close(x_ours.grad, x_torch.grad.numpy().reshape(x.shape), name=f"{name}: input gradient")
    theirs_params = dict(theirs.named_parameters())
    for key, parameter in ours.named_parameters():
        assert_close(parameter.grad, theirs_params[key].grad.numpy(), name=f"{name}: d{key}")


def test_nano_model_matches_torch(rng):
    from refvit.torch_ports import cswin as cswin_torch

    theirs = cswin_torch.randomise(cswin_torch.CSWin(32, 10, NANO["embed_dim"], NANO["depth"], NANO["split_size"],
                                                     NANO["num_heads"]), seed=1)
    for parameter in theirs.parameters():  # smaller weights keep the deep stack's activations moderate
        parameter.data.mul_(0.5)
    ours = create_model("cswin_nano", dtype=np.float64)
    ours.load_state_dict(cswin_torch.state_numpy(theirs))
    ours.eval()
    images = rng.standard_normal((2, 32, 32, 3))
    upstream = rng.standard_normal((2, 10))
    x_ours = Tensor(images, requires_grad=True)
    logits = ours(x_ours)
    logits.backward(upstream)
    x_torch = cswin_torch.nchw(images)
    expected = theirs(x_torch)
    expected.backward(torch.tensor(upstream))
    assert_close(logits.data, expected.detach().numpy(), name="logits")
    assert_close(x_ours.grad, x_torch.grad.numpy().transpose(0, 2, 3, 1), name="image gradient")
    theirs_params = dict(theirs.named_parameters())
    for key in ("stage1_conv_embed.0.weight", "stage1.0.attns.0.get_v.weight", "stage2.1.attns.1.get_v.bias",
                "stage3.0.qkv.weight", "merge3.conv.weight", "stage4.0.attns.0.get_v.weight", "head.weight"):
        ours_grad = dict(ours.named_parameters())[key].grad
        assert_close(ours_grad, theirs_params[key].grad.numpy(), name=f"d{key}")


# ---------------------------------------------------------------- gradients and training mode

def test_nano_gradients_match_central_differences(rng):
    """Tensor.backward through the whole nano model against central differences (refvit.testing.check_module_gradients, float64)."""
    model = create_model("cswin_nano", dtype=np.float64).eval()
    images = rng.standard_normal((1, 32, 32, 3))
    upstream = rng.standard_normal((1, 10))
    probes = [("input", (0, 5, 9, 1)), ("input", (0, 30, 2, 2)),
              ("stage1.0.attns.1.get_v.weight", (3, 0, 2, 1)),
              ("stage2.0.qkv.weight", (70, 5)),
              ("stage3.1.proj.bias", (17,)),
              ("stage4.0.attns.0.get_v.bias", (5,)),
              ("merge1.conv.weight", (2, 4, 1, 0))]
    check_module_gradients(model, images, probes, upstream)


def test_nano_forward_backward_float32():
    model = create_model("cswin_nano").train()
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    x = Tensor(images, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    logits.backward(np.ones((2, 10), np.float32))
    assert x.grad.shape == images.shape and np.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())


def test_drop_path_rates_and_training_mode():
    model = create_model("cswin_nano", drop_path_rate=0.5, dtype=np.float64)
    blocks = [block for stage in range(1, 5) for block in getattr(model, f"stage{stage}")]
    assert type(blocks[0].drop_path).__name__ == "Identity"  # rate 0 for the first block, as torch.linspace
    assert [block.drop_path.drop_prob for block in blocks[1:]] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    block = model.stage2[1]
    x = np.random.default_rng(0).random((8, 4, 4, 64))
    block.eval()
    assert_close(block(x).data, block(x).data)
    block.train()
    refvit.nn.random.seed(0)
    first = block(x).data
    refvit.nn.random.seed(1)
    assert not np.allclose(first, block(x).data)
