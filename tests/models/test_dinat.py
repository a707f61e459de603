"""NAT / DiNAT modules and models: official state_dict layout and dilations, small-map padding, gradients,
backends, training mode, bad input, and the receptive-field example. Numerics against PyTorch are in
test_dinat_torch.py."""
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

import refvit
from refvit.autograd import Tensor
from refvit.models import create_model, list_models, model_info
from refvit.models.dinat import NAT
from refvit.nn.nat import ConvDownsampler, ConvTokenizer, NATBlock, NATLayer, NeighborhoodAttention2D
from refvit.testing import assert_close, check_module_gradients

MINI = dict(embed_dim=64, depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3, kernel_size=7)
TINY = dict(MINI, depths=(3, 4, 18, 5))
OFFICIAL_DILATIONS = {  # classification/dinat.py, written out
    "dinat_mini": [[1, 8, 1], [1, 4, 1, 4], [1, 2, 1, 2, 1, 2], [1, 1, 1, 1, 1]],
    "dinat_tiny": [[1, 8, 1], [1, 4, 1, 4], [1, 2] * 9, [1, 1, 1, 1, 1]],
}


def official_shapes(num_classes, embed_dim, depths, num_heads, mlp_ratio, kernel_size, layer_scale=False):
    """Keys and shapes of the official NAT / DiNAT in registration order, from its structure."""
    half = embed_dim // 2
    shapes = {"patch_embed.proj.0.weight": (half, 3, 3, 3), "patch_embed.proj.0.bias": (half,),
              "patch_embed.proj.1.weight": (embed_dim, half, 3, 3), "patch_embed.proj.1.bias": (embed_dim,),
              "patch_embed.norm.weight": (embed_dim,), "patch_embed.norm.bias": (embed_dim,)}
    span = 2 * kernel_size - 1
    for level, depth in enumerate(depths):
        dim, hidden = embed_dim * 2 ** level, int(embed_dim * 2 ** level * mlp_ratio)
        for index in range(depth):
            layer = f"levels.{level}.blocks.{index}."
            if layer_scale:
                shapes.update({layer + "gamma1": (dim,), layer + "gamma2": (dim,)})
            shapes.update({
                layer + "norm1.weight": (dim,), layer + "norm1.bias": (dim,),
                layer + "attn.rpb": (num_heads[level], span, span),
                layer + "attn.qkv.weight": (3 * dim, dim), layer + "attn.qkv.bias": (3 * dim,),
                layer + "attn.proj.weight": (dim, dim), layer + "attn.proj.bias": (dim,),
                layer + "norm2.weight": (dim,), layer + "norm2.bias": (dim,),
                layer + "mlp.fc1.weight": (hidden, dim), layer + "mlp.fc1.bias": (hidden,),
                layer + "mlp.fc2.weight": (dim, hidden), layer + "mlp.fc2.bias": (dim,)})
        if level < len(depths) - 1:
            down = f"levels.{level}.downsample."
            shapes.update({down + "reduction.weight": (2 * dim, dim, 3, 3), down + "norm.weight": (2 * dim,),
                           down + "norm.bias": (2 * dim,)})
    features = embed_dim * 2 ** (len(depths) - 1)
    shapes.update({"norm.weight": (features,), "norm.bias": (features,), "head.weight": (num_classes, features),
                   "head.bias": (num_classes,)})
    return shapes


def layout(model):
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def dilations_of(model):
    return [[layer.attn.dilation for layer in level.blocks] for level in model.levels]


# ---------------------------------------------------------------- layout

@pytest.mark.parametrize("name, config", [("nat_mini", MINI), ("dinat_mini", MINI), ("dinat_tiny", TINY)])
def test_official_state_dict_layout(name, config):
    model = create_model(name)
    expected = official_shapes(1000, **config)
    got = layout(model)
    assert list(got) == list(expected)
    assert got == expected
    assert sum(p.size for p in model.parameters()) == sum(int(np.prod(s)) for s in expected.values())
    assert dilations_of(model) == OFFICIAL_DILATIONS.get(name, [[1] * depth for depth in config["depths"]])
    assert all(layer.attn.kernel_size == 7 and layer.attn.head_dim == 32 for level in model.levels
               for layer in level.blocks)


def test_layer_scale_layout():
    model = create_model("nat_nano", layer_scale=1e-5)
    expected = official_shapes(10, 32, (2, 2, 4), (1, 2, 4), 3, 3, layer_scale=True)
    assert list(layout(model)) == list(expected) and layout(model) == expected
    assert (model.levels[1].blocks[0].gamma2.data == np.float32(1e-5)).all()


def test_registry_and_nano_layout():
    assert {"dinat_mini", "dinat_tiny", "dinat_nano"} <= set(list_models("dinat"))
    assert {"nat_mini", "nat_nano"} <= set(list_models("nat"))
    assert model_info("dinat_nano").img_size == 32 and model_info("dinat_mini").img_size == 224
    for name in ("dinat_nano", "nat_nano"):
        model = create_model(name)
        assert layout(model) == official_shapes(10, 32, (2, 2, 4), (1, 2, 4), 3, 3)
        assert 3e5 < sum(p.size for p in model.parameters()) < 2e6
    assert dilations_of(create_model("dinat_nano")) == [[1, 2], [1, 1], [1, 1, 1, 1]]
    assert dilations_of(create_model("nat_nano")) == [[1, 1], [1, 1], [1, 1, 1, 1]]


def test_initialisation_follows_official():
    model = create_model("dinat_nano")
    weight = model.levels[2].blocks[0].attn.qkv.weight.data
    assert abs(float(weight.std()) - 0.02) < 0.003 and np.abs(weight).max() <= 2.0
    rpb = model.levels[2].blocks[0].attn.rpb.data
    assert 0.0 < float(rpb.std()) < 0.03
    assert not model.levels[0].blocks[0].attn.proj.bias.data.any() and not model.head.bias.data.any()
    assert (model.norm.weight.data == 1).all() and not model.patch_embed.norm.bias.data.any()
    assert model.no_weight_decay_keywords() == {"rpb"}


# ---------------------------------------------------------------- small-map padding

def test_padding_amounts():
    attention = NeighborhoodAttention2D(8, 2, 3, dilation=2)
    assert attention.window_size == 6
    assert attention.padding(6, 9) == (0, 0)
    assert attention.padding(4, 9) == (2, 0)
    assert attention.padding(2, 5) == (4, 1)


def test_padded_small_map_is_dense_attention_over_padded_input(rng):
    """2x2 map, k = 3: NATTEN pads the input to 3x3, so every query attends to all 9 tokens, the
    5 padded ones with q, k, v = the qkv bias; written here as dense softmax attention."""
    dim = 4
    attention = NeighborhoodAttention2D(dim, 1, 3, dtype=np.float64)
    for parameter in attention.parameters():
        parameter.data[...] = rng.standard_normal(parameter.shape)
    x = rng.standard_normal((2, 2, 2, dim))
    padded = np.zeros((2, 3, 3, dim))
    padded[:, :2, :2] = x
    qkv = padded.reshape(2, 9, dim) @ attention.qkv.weight.data.T + attention.qkv.bias.data
    q, k, v = qkv[..., :dim], qkv[..., dim:2 * dim], qkv[..., 2 * dim:]
    rows, cols = np.divmod(np.arange(9), 3)
    bias = attention.rpb.data[0][rows[None, :] - rows[:, None] + 2, cols[None, :] - cols[:, None] + 2]
    logits = dim ** -0.5 * q @ k.transpose(0, 2, 1) + bias
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ v).reshape(2, 3, 3, dim)[:, :2, :2]
    expected = attended @ attention.proj.weight.data.T + attention.proj.bias.data
    assert_close(attention(x).data, expected, name="padded 2x2 neighbourhood attention")


def test_attention_backends_agree(kernel_backend, rng):
    """One padded (2x3 -> 3x3) and the cpu/cuda kernels against the numpy reference, float64."""
    attention = NeighborhoodAttention2D(4, 2, 3, dtype=np.float64)
    x = rng.standard_normal((1, 2, 3, 4))
    upstream = rng.standard_normal(x.shape)
    results = []
    for backend in ("numpy", kernel_backend):
        attention.zero_grad()
        attention.to(backend)
        tensor = Tensor(x, requires_grad=True)
        out = attention(tensor)
        out.backward(upstream)
        results.append((out.data, tensor.grad, attention.rpb.grad, attention.qkv.weight.grad))
    for name, reference, got in zip(("output", "dx", "drpb", "dqkv.weight"), *results):
        assert_close(got, reference, rtol=1e-9, atol=1e-11, name=f"{kernel_backend}: {name}")


# ---------------------------------------------------------------- gradients and training mode

def test_nano_gradients_match_central_differences(rng):
    """Tensor.backward through the whole dinat_nano against central differences (refvit.testing.check_module_gradients, float64), on a
    16x16 image: maps 4/2/1, so the DiNA layer (window 6) and the last level (window 3) are both padded."""
    model = create_model("dinat_nano", dtype=np.float64).eval()
    images = rng.standard_normal((1, 16, 16, 3))
    upstream = rng.standard_normal((1, 10))
    probes = [("input", (0, 5, 9, 1)), ("input", (0, 15, 14, 2)),
              ("patch_embed.proj.1.weight", (7, 3, 1, 2)),
              ("levels.0.blocks.1.attn.rpb", (0, 1, 3)),
              ("levels.0.blocks.1.attn.qkv.weight", (40, 5)),
              ("levels.1.downsample.reduction.weight", (9, 12, 0, 2)),
              ("levels.2.blocks.3.attn.rpb", (2, 4, 0)),
              ("levels.2.blocks.0.mlp.fc2.bias", (17,))]
    check_module_gradients(model, images, probes, upstream)


@pytest.mark.parametrize("name", ["dinat_nano", "nat_nano"])
def test_nano_forward_backward_float32(name):
    model = create_model(name).train()
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    x = Tensor(images, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    logits.backward(np.ones((2, 10), np.float32))
    assert x.grad.shape == images.shape and np.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())


def test_drop_path_rates_and_training_mode():
    model = create_model("dinat_nano", drop_path_rate=0.7, dtype=np.float64)
    layers = [layer for level in model.levels for layer in level.blocks]
    assert type(layers[0].drop_path).__name__ == "Identity"  # rate 0 for the first layer, as torch.linspace
    assert [layer.drop_path.drop_prob for layer in layers[1:]] == pytest.approx([0.1 * i for i in range(1, 8)])
    layer = model.levels[1].blocks[1]
    x = np.random.default_rng(0).random((8, 4, 4, 64))
    layer.eval()
    assert_close(layer(x).data, layer(x).data)
    layer.train()
    refvit.nn.random.seed(0)
    first = layer(x).data
    refvit.nn.random.seed(1)
    assert not np.allclose(first, layer(x).data)


def test_explicit_zero_scale_and_no_bias():
    attention = NeighborhoodAttention2D(8, 2, 3, qk_scale=0.0, bias=False)
    assert attention.scale == 0.0 and attention.rpb is None and "attn.rpb" not in attention.state_dict()
    assert NeighborhoodAttention2D(8, 2, 3).scale == 4 ** -0.5


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("build, message", [
    (lambda: NeighborhoodAttention2D(8, 3, 3), "NeighborhoodAttention2D: 'num_heads'"),
    (lambda: NeighborhoodAttention2D(8, 2, 4), "NeighborhoodAttention2D: 'kernel_size' must be odd"),
    (lambda: NeighborhoodAttention2D(8, 2, 3, dilation=0), "NeighborhoodAttention2D: 'dilation'"),
    (lambda: NeighborhoodAttention2D(8, 2, 3, attn_drop=0.1), "NeighborhoodAttention2D: 'attn_drop'"),
    (lambda: NATBlock(8, 2, 2, 3, dilations=[1]), "NATBlock: 'dilations'"),
    (lambda: NATBlock(8, 2, 2, 3, drop_path=[0.1]), "NATBlock: 'drop_path'"),
    (lambda: NAT(16, 2, (1, 1), (1,), kernel_size=3), "NAT: 'depths'"),
    (lambda: ConvTokenizer(3, 15), "ConvTokenizer: 'embed_dim'"),
])
def test_bad_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_forward_input():
    with pytest.raises(ValueError, match=r"NeighborhoodAttention2D: 'x' must be a \(B, H, W, 8\) map"):
        NeighborhoodAttention2D(8, 2, 3)(np.zeros((1, 4, 4, 6), np.float32))
    # float64 input to float32 parameters: the first op (LN1) rejects the mixed dtypes
    with pytest.raises(TypeError, match="layer_norm: 'x, weight, bias' must be of one dtype"):
        NATLayer(8, 2, kernel_size=3)(np.zeros((1, 4, 4, 8)))


def test_tokenizer_and_downsampler_shapes():
    assert ConvTokenizer(3, 8)(np.zeros((1, 9, 8, 3), np.float32)).shape == (1, 3, 2, 8)
    assert ConvDownsampler(8)(np.zeros((1, 5, 4, 8), np.float32)).shape == (1, 3, 2, 16)


# ---------------------------------------------------------------- receptive field example

def test_receptive_field_example():
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "receptive_field.py"
    spec = importlib.util.spec_from_file_location("receptive_field_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    layers, kernel = 3, 3
    widths = {}
    for label, dilations in example.layouts(layers, kernel, 2).items():
        mask = example.receptive_field(dilations, kernel, size=29)
        widths[label] = example.field_width(mask)
        assert mask.sum() == widths[label] ** 2  # a full square around the centre
    na, alternating, exponential = widths.values()
    assert na == layers * (kernel - 1) + 1
    assert alternating > na and alternating == 1 + (kernel - 1) * (1 + 2 + 1)
    assert exponential == kernel ** layers


# ---------------------------------------------------------------- benchmark equivalent

@pytest.mark.parametrize("dilation", [1, 2])
def test_bench_dense_masked_attention_equals_na2d(rng, dilation):
    """The PyTorch side of the na2d benchmark (dense attention, -inf outside the window) is the same op."""
    from refvit.bench.cases_dinat import _na2d_torch

    q, k, v = (rng.standard_normal((1, 2, 9, 8, 4)) for _ in range(3))
    kwargs = {"dilation": dilation, "rpb": rng.standard_normal((2, 5, 5))}
    expected, _ = refvit.ops.na2d.forward(q, k, v, 3, backend="numpy", **kwargs)
    with torch.no_grad():
        got = _na2d_torch((q, k, v, 3), kwargs)().numpy()
    assert_close(got, expected, name=f"dense masked attention, dilation {dilation}")


def test_bench_layer_wrapper_gradcheck_and_torch_equivalent(rng):
    """The op-like NATLayer wrapper of the bench passes gradcheck, and its PyTorch equivalent equals it."""
    from refvit.bench import _dinat_layer
    from refvit.bench.cases_dinat import _layer_torch
    from refvit.testing import gradcheck

    args, kwargs = _dinat_layer.example(rng)
    gradcheck(_dinat_layer, args, kwargs, backend="cpu")
    x = rng.standard_normal((1, 7, 7, 8))
    expected, _ = _dinat_layer.forward(x, 2, 3, dilation=2)
    with torch.no_grad():
        got = _layer_torch((x, 2, 3), {"dilation": 2})().numpy()
    assert_close(got, expected, name="NATLayer, dense masked attention in torch")
