"""CoAtNet: timm's state_dict layout, numerics against a torch reference, gradients, bad input."""
import numpy as np
import pytest

from refvit import Tensor, nn
from refvit.models import create_model, list_models
from refvit.models.coatnet import COATNET_0, COATNET_NANO, CoAtNet, stage_feature_sizes
from refvit.nn.coatnet import (
    Attention2d, Downsample2d, MbConvBlock, RelPosBias, SqueezeExcite, TransformerBlock2d, make_divisible,
)
from refvit.ops.relative_position_bias import relative_position_index
from refvit.testing import assert_close, numerical_vjp, relative_error

RTOL, ATOL = 1e-9, 1e-10


# ---------------------------------------------------------------- expected timm keys
def batch_norm_keys(prefix, channels):
    return [(prefix + "weight", (channels,)), (prefix + "bias", (channels,)), (prefix + "running_mean", (channels,)),
            (prefix + "running_var", (channels,)), (prefix + "num_batches_tracked", ())]


def conv_keys(prefix, out_chs, in_chs, kernel=1, bias=True):
    keys = [(prefix + "weight", (out_chs, in_chs, kernel, kernel))]
    return keys + ([(prefix + "bias", (out_chs,))] if bias else [])


def mbconv_keys(prefix, in_chs, out_chs, first):
    mid, squeeze = make_divisible(4 * out_chs), int(0.25 * out_chs)
    keys = conv_keys(prefix + "shortcut.expand.", out_chs, in_chs) if first and in_chs != out_chs else []
    keys += batch_norm_keys(prefix + "pre_norm.", in_chs)
    keys += conv_keys(prefix + "conv1_1x1.", mid, in_chs, bias=False) + batch_norm_keys(prefix + "norm1.", mid)
    keys += conv_keys(prefix + "conv2_kxk.", mid, 1, 3, bias=False) + batch_norm_keys(prefix + "norm2.", mid)
    keys += conv_keys(prefix + "se.fc1.", squeeze, mid) + conv_keys(prefix + "se.fc2.", mid, squeeze)
    return keys + conv_keys(prefix + "conv3_1x1.", out_chs, mid)


def transformer_keys(prefix, in_chs, out_chs, first, feat_size, dim_head=32):
    if first:
        keys = conv_keys(prefix + "shortcut.expand.", out_chs, in_chs) if in_chs != out_chs else []
        keys += [(prefix + "norm1.norm.weight", (in_chs,)), (prefix + "norm1.norm.bias", (in_chs,))]
    else:
        keys = [(prefix + "norm1.weight", (in_chs,)), (prefix + "norm1.bias", (in_chs,))]
    rows = (2 * feat_size[0] - 1) * (2 * feat_size[1] - 1)
    keys += conv_keys(prefix + "attn.qkv.", 3 * out_chs, in_chs)
    keys += [(prefix + "attn.rel_pos.relative_position_bias_table", (rows, out_chs // dim_head))]
    keys += conv_keys(prefix + "attn.proj.", out_chs, out_chs)
    keys += [(prefix + "norm2.weight", (out_chs,)), (prefix + "norm2.bias", (out_chs,))]
    return keys + conv_keys(prefix + "mlp.fc1.", 4 * out_chs, out_chs) + conv_keys(prefix + "mlp.fc2.", out_chs,
                                                                                     4 * out_chs)


def expected_keys(cfg, img_size, num_classes):
    """timm's MaxxVit state_dict (keys in order, shapes) for a CoAtNet config, written from its structure."""
    stem = cfg.stem_width
    keys = conv_keys("stem.conv1.", stem, 3, 3, bias=False) + batch_norm_keys("stem.norm1.", stem)
    keys += conv_keys("stem.conv2.", stem, stem, 3, bias=False)
    size, in_chs = ((img_size - 1) // 2 + 1,) * 2, stem
    for stage, (out_chs, depth, block_type) in enumerate(zip(cfg.embed_dim, cfg.depths, cfg.block_types)):
        size = tuple((r - 1) // 2 + 1 for r in size)
        for index in range(depth):
            prefix = f"stages.{stage}.blocks.{index}."
            if block_type == "C":
                keys += mbconv_keys(prefix, in_chs, out_chs, index == 0)
            else:
                keys += transformer_keys(prefix, in_chs, out_chs, index == 0, size)
            in_chs = out_chs
    hidden = cfg.head_hidden_size
    keys += [("head.norm.weight", (in_chs,)), ("head.norm.bias", (in_chs,))]
    keys += [("head.pre_logits.fc.weight", (hidden, in_chs)), ("head.pre_logits.fc.bias", (hidden,))]
    return keys + [("head.fc.weight", (num_classes, hidden)), ("head.fc.bias", (num_classes,))]


def layout(module):
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


def test_coatnet_0_state_dict_equals_timm_coatnet_0_224():
    model = create_model("coatnet_0")
    expected = expected_keys(COATNET_0, 224, 1000)
    assert set(layout(model)) == set(expected)
    assert layout(model) == expected
    tables = [v for k, v in model.state_dict().items() if k.endswith("relative_position_bias_table")]
    assert [t.shape for t in tables] == [(27 * 27, 12)] * 5 + [(13 * 13, 24)] * 2
    n_parameters = sum(p.size for p in model.parameters())
    assert 24_000_000 < n_parameters < 26_000_000


def test_relative_position_index_is_a_non_persistent_buffer():
    model = create_model("coatnet_nano")
    buffers = dict(model.named_buffers())
    key = "stages.2.blocks.1.attn.rel_pos.relative_position_index"
    assert key in buffers and key not in model.state_dict()
    np.testing.assert_array_equal(buffers[key], relative_position_index((2, 2)).reshape(-1))


def test_nano_layout_and_registry():
    assert {"coatnet_0", "coatnet_nano"} <= set(list_models("coatnet"))
    model = create_model("coatnet_nano")
    assert layout(model) == expected_keys(COATNET_NANO, 32, 10)
    assert 300_000 < sum(p.size for p in model.parameters()) < 2_000_000
    assert stage_feature_sizes((32, 32), 4) == [(8, 8), (4, 4), (2, 2), (1, 1)]


def test_nano_forward_backward_on_digits_shape():
    model = create_model("coatnet_nano")
    x = Tensor(np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32), requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    logits.backward(np.ones((2, 10), np.float32))
    assert x.grad.shape == x.shape
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------- gradients against central differences
def parameter_vjp_errors(module, x, names, rng):
    """Relative errors of Tensor.backward against numerical_vjp for ``x`` and the named parameters.

    The module runs on the ``numpy`` backend: the op references, fast on these tiny arrays."""
    module.to("numpy")
    parameters = dict(module.named_parameters())
    originals = [parameters[name].data.copy() for name in names]

    def forward(x_values, *values):
        for name, value in zip(names, values):
            parameters[name].data[...] = value
        return module(x_values).data

    x_tensor = Tensor(x.copy(), requires_grad=True)
    module.zero_grad()
    out = module(x_tensor)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    analytic = [x_tensor.grad] + [parameters[name].grad for name in names]
    numeric = numerical_vjp(forward, [x] + originals, upstream)
    for name, value in zip(names, originals):
        parameters[name].data[...] = value
    return {label: relative_error(a, n) for label, a, n in zip(["x"] + list(names), analytic, numeric)}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("stride", [1, 2])
def test_mbconv_gradients_match_central_differences(training, stride, rng):
    block = MbConvBlock(4 if stride == 1 else 2, 4, stride=stride, dtype=np.float64).train(training)
    for name, value in block.state_dict().items():
        if name.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif not name.endswith("num_batches_tracked"):
            value[...] += 0.3 * rng.standard_normal(value.shape)
    x = rng.standard_normal((2, 4, 4, block.in_chs))
    names = ["pre_norm.weight", "norm2.bias", "conv2_kxk.weight", "se.fc1.weight", "se.fc2.bias", "conv3_1x1.bias"]
    errors = parameter_vjp_errors(block, x, names, rng)
    assert max(errors.values()) < 1e-6, errors


def test_transformer_block_gradients_match_central_differences(rng):
    block = TransformerBlock2d(8, 16, (2, 2), stride=2, dim_head=8, dtype=np.float64)
    block.attn.rel_pos.relative_position_bias_table.data[...] = rng.standard_normal((9, 2))
    x = rng.standard_normal((1, 4, 4, 8))
    names = ["norm1.norm.weight", "attn.rel_pos.relative_position_bias_table", "attn.proj.bias", "mlp.fc1.bias"]
    errors = parameter_vjp_errors(block, x, names, rng)
    assert max(errors.values()) < 1e-6, errors


def test_nano_gradients_match_central_differences(rng):
    """A few input elements and parameter entries of the whole nano model, eval mode, float64."""
    model = create_model("coatnet_nano", dtype=np.float64).eval().to("numpy")
    parameters = dict(model.named_parameters())
    x = rng.random((2, 32, 32, 3))
    picks = [("stem.conv1.weight", (3, 1, 2, 0)), ("stages.0.blocks.0.conv2_kxk.weight", (7, 0, 1, 1)),
             ("stages.1.blocks.1.se.fc2.bias", (5,)), ("stages.2.blocks.0.attn.rel_pos.relative_position_bias_table",
                                                        (4, 1)),
             ("stages.2.blocks.1.attn.qkv.weight", (40, 3, 0, 0)), ("stages.3.blocks.0.mlp.fc1.weight", (9, 2, 0, 0)),
             ("head.pre_logits.fc.bias", (11,)), ("head.fc.weight", (3, 17))]
    inputs = [(0, 5, 7, 1), (1, 20, 3, 0)]

    def write(values):
        for (name, index), value in zip(picks, values[len(inputs):]):
            parameters[name].data[index] = value
        x_values = x.copy()
        for index, value in zip(inputs, values[:len(inputs)]):
            x_values[index] = value
        return x_values

    start = np.array([x[i] for i in inputs] + [parameters[name].data[i] for name, i in picks])
    x_tensor = Tensor(write(start), requires_grad=True)
    logits = model(x_tensor)
    upstream = rng.standard_normal(logits.shape)
    logits.backward(upstream)
    analytic = np.array([x_tensor.grad[i] for i in inputs] + [parameters[name].grad[i] for name, i in picks])
    (numeric,) = numerical_vjp(lambda values: model(write(values)).data, [start], upstream)
    write(start)
    assert relative_error(analytic, numeric) < 1e-6, (analytic, numeric)


# ---------------------------------------------------------------- properties and bad input
def test_mbconv_stride_one_keeps_shape_and_se_gate_lies_in_unit_interval(rng):
    block = MbConvBlock(16, 16, dtype=np.float64).eval()
    x = 3.0 * rng.standard_normal((2, 5, 7, 16))
    assert block(x).shape == x.shape
    hidden = block.norm2(block.conv2_kxk(block.norm1(block.conv1_1x1(block.pre_norm(x)))))
    gate = block.se.gate_values(hidden).data
    assert gate.shape == (2, 1, 1, block.mid_chs) and (gate > 0).all() and (gate < 1).all()
    assert_close(block.se(hidden).data, hidden.data * gate)
    assert MbConvBlock(16, 24, stride=2)(rng.random((1, 6, 4, 16)).astype(np.float32)).shape == (1, 3, 2, 24)


def test_relative_attention_with_zero_table_is_plain_attention(rng):
    with_table = Attention2d(16, dim_head=8, window_size=(3, 2), dtype=np.float64)
    plain = Attention2d(16, dim_head=8, dtype=np.float64)
    with_table.rel_pos.relative_position_bias_table.data[...] = 0.0
    plain.load_state_dict({k: v for k, v in with_table.state_dict().items() if "rel_pos" not in k})
    x = rng.standard_normal((2, 3, 2, 16))
    assert_close(with_table(x).data, plain(x).data)


def test_drop_path_is_random_in_training_only(rng):
    block = MbConvBlock(8, 8, drop_path=0.5, dtype=np.float64)
    x = rng.standard_normal((16, 3, 3, 8))
    nn.random.seed(3)
    trained = block(x).data
    dropped = [np.allclose(trained[b], block.shortcut(x)[b]) for b in range(16)]
    assert 0 < sum(dropped) < 16
    block.eval()
    assert_close(block(x).data, block(x).data)


def test_bad_arguments_raise_named_errors(rng):
    with pytest.raises(ValueError, match="MbConvBlock: 'out_chs' must equal in_chs"):
        MbConvBlock(8, 16, stride=1)
    with pytest.raises(ValueError, match="MbConvBlock: 'stride'"):
        MbConvBlock(8, 16, stride=3)
    with pytest.raises(ValueError, match="MbConvBlock: 'x' must have an even height and width"):
        MbConvBlock(8, 16, stride=2)(rng.random((1, 5, 6, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="TransformerBlock2d: 'dim_out'"):
        TransformerBlock2d(32, 64, (2, 2), stride=1)
    with pytest.raises(ValueError, match="Attention2d: 'dim_out' must be a multiple of dim_head"):
        Attention2d(48, 48, dim_head=32)
    with pytest.raises(ValueError, match="Attention2d: 'attn_drop'"):
        Attention2d(32, attn_drop=0.1)
    with pytest.raises(ValueError, match="Downsample2d: 'pool_type'"):
        Downsample2d(8, 8, pool_type="avg")
    with pytest.raises(ValueError, match=r"Attention2d: 'x' must be a \(B, 3, 3, C\) map"):
        Attention2d(32, window_size=(3, 3))(rng.random((1, 4, 4, 32)).astype(np.float32))
    with pytest.raises(ValueError, match="CoAtNet: 'img_size'"):
        CoAtNet(COATNET_NANO, img_size=0)
    assert RelPosBias(3, 2).relative_position_bias_table.shape == (25, 2)
    assert SqueezeExcite(8, 2).fc1.weight.shape == (2, 8, 1, 1)


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_blocks_on_kernel_backends_equal_numpy(backend, rng):
    """Tiny MBConv and transformer blocks: outputs and gradients of a kernel backend equal the numpy reference."""
    for make, shape in [(lambda: MbConvBlock(4, 4, dtype=np.float64), (1, 4, 4, 4)),
                        (lambda: TransformerBlock2d(8, 16, (2, 2), stride=2, dim_head=8, dtype=np.float64),
                         (1, 4, 4, 8))]:
        nn.random.seed(0)
        block = make().eval()
        x, upstream = rng.standard_normal(shape), None
        results = []
        for name in ("numpy", backend):
            block.to(name).zero_grad()
            x_tensor = Tensor(x, requires_grad=True)
            out = block(x_tensor)
            upstream = rng.standard_normal(out.shape) if upstream is None else upstream
            out.backward(upstream)
            results.append([out.data, x_tensor.grad] + [p.grad for p in block.parameters()])
        for ours, reference in zip(*results):
            assert_close(ours, reference, rtol=1e-9, atol=1e-11)


def test_bench_mbconv_wrapper_keeps_the_op_contract():
    from refvit.bench import _coatnet_mbconv
    from refvit.testing import gradcheck

    args, kwargs = _coatnet_mbconv.example(np.random.default_rng(0))
    assert gradcheck(_coatnet_mbconv, args, kwargs)["x"] < 1e-6


def test_pointwise_conv_equals_a_1x1_conv2d(rng):
    from refvit.nn.coatnet import PointwiseConv2d

    pointwise, conv = PointwiseConv2d(6, 4, dtype=np.float64), nn.Conv2d(6, 4, 1, dtype=np.float64)
    conv.load_state_dict(pointwise.state_dict())
    x, upstream = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((2, 3, 5, 4))
    outputs = []
    for module in (pointwise, conv):
        x_tensor = Tensor(x, requires_grad=True)
        out = module(x_tensor)
        out.backward(upstream)
        outputs.append([out.data, x_tensor.grad, module.weight.grad, module.bias.grad])
    for ours, reference in zip(*outputs):
        assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    assert outputs[0][2].shape == (4, 6, 1, 1)
