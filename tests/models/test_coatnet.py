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
from refvit.testing import assert_close, numerical_vjp

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
