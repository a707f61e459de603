"""The rule of :mod:`refvit.kernels.cpu.na2d.dispatch`: its thresholds, and the table of which shapes
(every na2d layer of every shipped model, every na2d bench case) take which path."""
import numpy as np
import pytest

from refvit import models, ops
from refvit.bench import cases_dinat
from refvit.kernels.cpu.na2d import dispatch
from refvit.nn.nat.attention import NeighborhoodAttention2D


def _options(kernel_size, dilation=1, **kwargs):
    _, cache = ops.na2d.forward(*(np.zeros((1, 1, 56, 56, 1)),) * 3, kernel_size, dilation=dilation,
                                backend="numpy", **kwargs)
    return cache.options


def shipped_layers():
    """``{(side, kernel, dilation): {model names}}`` of every na2d layer of every shipped model, read
    from the built models (map side after the layer's zero padding)."""
    layers = {}
    for name in models.list_models():
        model = models.create_model(name)
        size = model.img_size if np.isscalar(model.img_size) else model.img_size[0]
        for path, module in model.named_modules():
            if isinstance(module, NeighborhoodAttention2D):
                side = size // 4 // 2 ** int(path.split(".")[1])  # levels.<i>: 4x patch embedding, then halved
                side += module.padding(side, side)[0]
                layers.setdefault((side, module.kernel_size, module.dilation), set()).add(name)
    return layers


def test_table_lists_every_layer_of_every_shipped_model():
    table = {(layer.side, layer.kernel, layer.dilation): set(layer.models) for layer in dispatch.SHIPPED_LAYERS}
    assert {key: names for key, names in table.items() if names} == shipped_layers()


@pytest.mark.parametrize("layer", dispatch.SHIPPED_LAYERS,
                         ids=lambda layer: f"{layer.side}-k{layer.kernel}-d{layer.dilation}")
def test_each_layer_takes_the_path_of_the_table(rng, layer):
    q, k, v, dout = (rng.standard_normal((1, 1, layer.side, layer.side, 2)).astype(np.float32) for _ in range(4))
    rpb = rng.standard_normal((1, 2 * layer.kernel - 1, 2 * layer.kernel - 1)).astype(np.float32)
    out, cache = ops.na2d.forward(q, k, v, layer.kernel, dilation=layer.dilation, rpb=rpb, backend="cpu")
    ops.na2d.backward(dout, cache)
    assert dispatch.last_path == {"forward": layer.forward, "backward": layer.backward}


def test_table_names_real_bench_cases():
    names = {case.name for case in cases_dinat.CASES}
    for layer in dispatch.SHIPPED_LAYERS:
        assert set(layer.cases) <= names


def test_module_docstring_shows_the_table():
    assert dispatch.layer_table() in dispatch.__doc__


def test_dense_by_tokens_per_slot():
    options = _options(3)
    assert dispatch.choose_path(8, 8, options, "forward") == "dense"       # 64 tokens, 9 slots
    assert dispatch.choose_path(16, 16, options, "forward") == "dense"     # 28 tokens per slot
    assert dispatch.choose_path(20, 20, options, "backward") == "general"  # 44 per slot
    assert dispatch.choose_path(56, 56, _options(7), "forward") == "wide"  # 64 per slot
    assert dispatch.choose_path(33, 33, _options(7), "forward") == "tiled"  # 1089 tokens: above 1024


@pytest.mark.parametrize("options, width, expected", [
    (dict(), 56, "wide"), (dict(), 47, "tiled"), (dict(dilation=(1, 2)), 96, "wide"),
    (dict(dilation=(1, 2)), 56, "tiled"), (dict(stride=2), 56, "tiled"),
    (dict(is_causal=(False, True)), 56, "tiled"),
])
def test_large_window_forward_by_options_and_group_width(options, width, expected):
    opts = _options(7, **options)
    assert dispatch.choose_path(56, width, opts, "forward") == expected
    assert dispatch.choose_path(56, width, opts, "forward", finite=False) == "general"


@pytest.mark.parametrize("kernel, side, expected", [
    (7, 56, "tiled"), (7, 7, "tiled"), (5, 14, "tiled"), (3, 56, "general"), (3, 8, "dense"), ((3, 7), 56, "general"),
])
def test_backward_by_window_size(kernel, side, expected):
    opts = _options(kernel)
    assert dispatch.choose_path(side, side, opts, "backward") == expected
    non_finite = "dense" if dispatch.dense_applies(side, side, opts) else "general"
    assert dispatch.choose_path(side, side, opts, "backward", finite=False) == non_finite


def test_small_windows_on_large_maps_take_general():
    assert dispatch.choose_path(56, 56, _options(3), "forward") == "general"
    assert dispatch.choose_path(112, 112, _options(3), "forward") == "general"


def test_large_window_forward_leaves_dense_above_400_tokens():
    options = _options(7)
    assert dispatch.choose_path(20, 20, options, "forward") == "dense"          # 400 tokens
    assert dispatch.choose_path(21, 21, options, "forward") == "tiled"          # 441
    assert dispatch.choose_path(21, 21, options, "forward", finite=False) == "dense"
    assert dispatch.choose_path(28, 28, _options(3), "forward") == "general"   # 3x3: the rule of small windows
    assert dispatch.choose_path(16, 16, _options(3), "forward") == "dense"


def test_small_window_backward_leaves_dense_above_100_tokens():
    options = _options(3)
    assert dispatch.choose_path(10, 10, options, "backward") == "dense"    # 100 tokens
    assert dispatch.choose_path(8, 8, options, "backward") == "dense"      # the nano layers
    assert dispatch.choose_path(11, 11, options, "backward") == "general"  # 121
    assert dispatch.choose_path(16, 16, _options(7), "backward") == "tiled"
