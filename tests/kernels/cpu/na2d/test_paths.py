"""Each ``cpu`` path of ``na2d`` (``dense``, ``tiled``, ``wide``, ``general``), forced through ``ops.na2d.forward`` and
``backward``, against the NumPy reference; the record of the path taken says that it ran. ``wide`` is a forward
path only: its calls' backward runs on ``tiled``, and a backward forced onto ``wide`` is refused.

The shapes exercise what the paths treat specially: border columns (clamped windows) next to interior
ones, several maps side by side in one wide row and split across tasks, maps only as wide as the
kernel, kernels taller than wide and wider than tall, kernel 1 on one axis (no border on it), dilation
groups of unequal size, bias tables with and without rows, and, for ``dense``, ``tiled`` and ``general``,
stride and causal windows (for ``tiled`` also on rows of several tiles)."""
import itertools

import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import na2d as cpu_na2d
from refvit.kernels.cpu.na2d import dispatch, general, tiled, wide
from refvit.ops._neighborhood import Options
from refvit.testing import assert_close
from tests.conftest import tolerance

# (batch, heads, (H, W), head_dim, kernel_size, dilation, with_rpb)
SHAPES = [
    (1, 2, (9, 11), 5, 3, 1, True),            # head_dim not a multiple of four
    (2, 3, (7, 13), 8, (5, 3), 1, True),       # several maps per wide row, two kernel sizes
    (1, 1, (5, 5), 4, 5, 1, True),             # kernel as large as the map: every column is a border
    (2, 2, (11, 14), 3, 3, (2, 3), True),      # dilation groups of unequal size (11 % 2, 14 % 3)
    (1, 2, (9, 9), 6, 3, 3, False),            # groups exactly the kernel's size, no bias
    (1, 1, (1, 17), 4, (1, 7), 1, True),       # the na1d shape: one row, kernel 1 on it
    (1, 2, (11, 6), 4, (7, 3), 1, True),       # taller kernel: wide tall-column margins
    (2, 1, (6, 12), 3, (3, 7), 1, True),       # wider kernel: many border columns, few border rows
    (1, 3, (8, 9), 5, (1, 5), 1, True),        # no border rows: no corners
    (1, 2, (9, 7), 4, (5, 1), 1, True),        # no border columns: the wide rows alone
]
IDS = ["odd-head-dim", "many-maps", "kernel-covers-map", "dilation-unequal-groups", "dilation-no-rpb", "one-row",
       "tall-kernel", "wide-kernel", "kernel-1-rows", "kernel-1-cols"]
# the backward path run after each forced forward path (wide has none: tiled, as the rule takes after it)
BACKWARD = {"dense": "dense", "tiled": "tiled", "wide": "tiled", "general": "general"}


@pytest.fixture
def force_path(monkeypatch):
    """``force_path(name)``: every na2d call takes the path ``name`` (its backward: :data:`BACKWARD`)."""
    def force(name):
        monkeypatch.setattr(dispatch, "choose_path",
                            lambda height, width, options, direction, finite=True:
                            name if direction == "forward" else BACKWARD[name])
    return force


def _inputs(rng, batch, heads, size, head_dim, kernel_size, with_rpb):
    kernel_h, kernel_w = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
    q, k, v, dout = (rng.standard_normal((batch, heads) + size + (head_dim,)) for _ in range(4))
    rpb = rng.standard_normal((heads, 2 * kernel_h - 1, 2 * kernel_w - 1)) if with_rpb else None
    return q, k, v, dout, rpb


def _compare(path, dtype, q, k, v, dout, rpb, kernel_size, **options):
    """The path's results through the op against the NumPy reference's, at the dtype's tolerance."""
    expected, ref_cache = ops.na2d.forward(q, k, v, kernel_size, rpb=rpb, backend="numpy", **options)
    expected_grads = ops.na2d.backward(dout, ref_cache)
    q, k, v, dout = (a.astype(dtype) for a in (q, k, v, dout))
    rpb = None if rpb is None else rpb.astype(dtype)
    out, cache = ops.na2d.forward(q, k, v, kernel_size, rpb=rpb, backend="cpu", **options)
    grads = ops.na2d.backward(dout, cache)
    assert dispatch.last_path == {"forward": path, "backward": BACKWARD[path]}
    assert out.dtype == dtype and all(g is None or g.dtype == dtype for g in grads)
    tol = tolerance(dtype)
    assert_close(out, expected, **tol)
    assert_close(np.asarray(cache.attn).reshape(ref_cache.attn.shape), ref_cache.attn, **tol)
    for got, want in zip(grads, expected_grads):
        assert (got is None) == (want is None)
        if want is not None:
            assert_close(got, want, **tol)


@pytest.mark.parametrize("batch, heads, size, head_dim, kernel_size, dilation, with_rpb", SHAPES, ids=IDS)
@pytest.mark.parametrize("path", dispatch.PATHS)
def test_path_matches_numpy(rng, dtype, force_path, path, batch, heads, size, head_dim, kernel_size, dilation,
                            with_rpb):
    force_path(path)
    q, k, v, dout, rpb = _inputs(rng, batch, heads, size, head_dim, kernel_size, with_rpb)
    _compare(path, dtype, q, k, v, dout, rpb, kernel_size, dilation=dilation)


@pytest.mark.parametrize("options", [dict(stride=2), dict(is_causal=(True, False)), dict(is_causal=True, dilation=2),
                                     dict(stride=(1, 3), dilation=(2, 1))],
                         ids=["stride", "causal-rows", "causal-dilated", "stride-dilated"])
@pytest.mark.parametrize("path", ["dense", "tiled", "general"])
def test_strided_and_causal_windows_match_numpy(rng, dtype, force_path, path, options):
    force_path(path)
    q, k, v, dout, rpb = _inputs(rng, 2, 2, (7, 9), 4, 3, True)
    _compare(path, dtype, q, k, v, dout, rpb, 3, **options)


@pytest.mark.parametrize("options", [dict(stride=2), dict(is_causal=True, dilation=2)], ids=["stride", "causal-dilated"])
@pytest.mark.parametrize("min_maps", [1, 5], ids=["one-pass", "two-passes"])  # the call has 4 maps
def test_general_backward_in_one_pass_and_in_two_match_numpy(rng, dtype, force_path, monkeypatch, min_maps, options):
    monkeypatch.setattr(general, "BACKWARD_MAP_MIN_MAPS", min_maps)
    force_path("general")
    q, k, v, dout, rpb = _inputs(rng, 2, 2, (7, 9), 4, 3, True)
    _compare("general", dtype, q, k, v, dout, rpb, 3, **options)


@pytest.mark.parametrize("options", [dict(), dict(stride=(1, 2)), dict(is_causal=(False, True)), dict(dilation=(1, 2)),
                                     dict(dilation=(2, 3), stride=(2, 2), is_causal=(True, False))],
                         ids=["plain", "stride", "causal-cols", "dilation", "all"])
def test_tiled_rows_of_several_tiles_match_numpy(rng, dtype, force_path, options):
    """Rows wider than a tile (and than two): the key bands of neighbouring tiles overlap, and the
    last tile of a dilation group is partial."""
    assert 2 * tiled.TILE < 37
    force_path("tiled")
    q, k, v, dout, rpb = _inputs(rng, 1, 2, (6, 37), 4, (3, 5), True)
    _compare("tiled", dtype, q, k, v, dout, rpb, (3, 5), **options)


@pytest.mark.parametrize("path", dispatch.PATHS)
def test_float64_agrees_with_numpy_to_rounding(rng, force_path, path):
    force_path(path)
    q, k, v, dout, rpb = _inputs(rng, 2, 2, (10, 12), 5, 5, True)
    expected, ref_cache = ops.na2d.forward(q, k, v, 5, dilation=(1, 2), rpb=rpb, backend="numpy")
    out, cache = ops.na2d.forward(q, k, v, 5, dilation=(1, 2), rpb=rpb, backend="cpu")
    grads = ops.na2d.backward(dout, cache)
    for got, want in zip((out,) + grads, (expected,) + ops.na2d.backward(dout, ref_cache)):
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_every_backward_reads_every_forward_cache(rng, monkeypatch):
    """All paths store the softmax weights as (B, heads, H, W, kh*kw): any backward reads any forward's."""
    q, k, v, dout, rpb = _inputs(rng, 1, 2, (8, 9), 4, 3, True)
    results = {}
    for forward_path in dispatch.PATHS:
        for backward_path in dispatch.BACKWARD_PATHS:
            chosen = {"forward": forward_path, "backward": backward_path}
            monkeypatch.setattr(dispatch, "choose_path", lambda h, w, o, direction, finite=True: chosen[direction])
            out, cache = ops.na2d.forward(q, k, v, 3, rpb=rpb, backend="cpu")
            results[forward_path, backward_path] = (out, np.asarray(cache.attn)) + ops.na2d.backward(dout, cache)
    first = results["general", "general"]
    for arrays in results.values():
        for a, b in zip(arrays, first):
            assert_close(a, b, **tolerance(np.float64))


@pytest.mark.parametrize("row_length", [1, 7])
def test_wide_rows_split_across_tasks(rng, force_path, monkeypatch, row_length):
    """More maps than one task takes: the wide rows and tall columns are cut between maps, and every
    cut gives the same values as one task over the whole row."""
    force_path("wide")
    q, k, v, _, rpb = _inputs(rng, 3, 2, (9, 10), 4, 3, True)
    whole = ops.na2d.forward(q, k, v, 3, dilation=(1, 2), rpb=rpb, backend="cpu")
    monkeypatch.setattr(wide, "TARGET_ROW_LENGTH", row_length)
    split = ops.na2d.forward(q, k, v, 3, dilation=(1, 2), rpb=rpb, backend="cpu")
    assert dispatch.last_path["forward"] == "wide"
    np.testing.assert_array_equal(whole[0], split[0])
    np.testing.assert_array_equal(np.asarray(whole[1].attn), np.asarray(split[1].attn))


def test_a_backward_forced_onto_the_wide_path_is_refused(rng, monkeypatch):
    """``wide`` has no backward: a rule that gave it one fails with a message that names the paths that
    have one, and the paths with a backward are exactly those the cpu entry runs."""
    assert set(cpu_na2d._BACKWARD) == set(dispatch.BACKWARD_PATHS) == set(dispatch.PATHS) - {"wide"}
    monkeypatch.setattr(dispatch, "choose_path", lambda h, w, o, direction, finite=True: "wide")
    q, k, v, dout, rpb = _inputs(rng, 1, 2, (6, 7), 4, 3, True)
    out, cache = ops.na2d.forward(q, k, v, 3, rpb=rpb, backend="cpu")
    assert dispatch.last_path["forward"] == "wide"
    with pytest.raises(ValueError, match="the 'wide' path has no backward; a backward takes one of dense, tiled, "
                                         "general"):
        ops.na2d.backward(dout, cache)


def test_the_rule_never_gives_a_backward_the_wide_path():
    """Every backward the rule can choose has a backward, over map sides, kernels, dilations, strides
    and causal windows, finite inputs or not (the forward of the same calls does take ``wide``)."""
    forward_paths = set()
    for side, kernel, dilation, stride, causal, finite in itertools.product(
            (3, 14, 28, 56, 112, 200), (1, 3, 5, 7, 13), (1, 2, 4), (1, 2), (False, True), (True, False)):
        if kernel * dilation > side:
            continue
        options = Options((kernel, kernel), (dilation, dilation), (stride, stride), (causal, False), 1.0)
        assert dispatch.choose_path(side, side, options, "backward", finite) in dispatch.BACKWARD_PATHS
        forward_paths.add(dispatch.choose_path(side, side, options, "forward", finite))
    assert forward_paths == set(dispatch.PATHS)


@pytest.mark.parametrize("path", ["dense", "general", "rule"])  # tiled, wide mix queries: the rule keeps NaN away
def test_non_finite_values_stay_in_their_own_map(force_path, monkeypatch, path):
    """A NaN in one batch element's map must not reach another element's outputs or gradients. By the
    rule, a call that would take the tiled or wide path takes the general one when an input is not finite."""
    if path == "rule":
        monkeypatch.setattr(dispatch, "WIDE_MIN_GROUP_COLS", 1)  # any width
        monkeypatch.setattr(dispatch, "TILED_MIN_SLOTS", 1)      # any window
        monkeypatch.setattr(dispatch, "DENSE_MAX_TOKENS", 0)
    else:
        force_path(path)
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 6, 7, 4)) for _ in range(3))
    q[0, 1, 2, 0, 1] = np.nan  # a border column of map (0, 1)
    out, cache = ops.na2d.forward(q, k, v, 3, backend="cpu")
    dout = rng.standard_normal(out.shape)
    dout[0, 0, 5, 6, 0] = np.inf
    dq, dk, dv, _ = ops.na2d.backward(dout, cache)
    expected = "general" if path == "rule" else path
    assert dispatch.last_path == {"forward": expected, "backward": expected}
    for grad in (out, dq, dk, dv):
        assert np.isfinite(grad[1]).all()
    with np.errstate(invalid="ignore"):
        reference, ref_cache = ops.na2d.forward(q, k, v, 3, backend="numpy")
        reference_grads = ops.na2d.backward(dout, ref_cache)[:3]
    np.testing.assert_array_equal(np.isnan(out), np.isnan(reference))
    for got, want in zip((dq, dk, dv), reference_grads):
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))


def test_na1d_runs_on_the_na2d_paths(rng):
    q, k, v, dout = (rng.standard_normal((2, 2, 300, 4)) for _ in range(4))
    rpb = rng.standard_normal((2, 13))
    expected, ref_cache = ops.na1d.forward(q, k, v, 7, dilation=2, rpb=rpb, backend="numpy")
    out, cache = ops.na1d.forward(q, k, v, 7, dilation=2, rpb=rpb, backend="cpu")
    grads = ops.na1d.backward(dout, cache)
    # a 1 x 300 map with 7 slots: above the dense limit, a window too small for tiles
    assert dispatch.last_path == {"forward": "general", "backward": "general"}
    assert_close(out, expected, **tolerance(np.float64))
    for got, want in zip(grads, ops.na1d.backward(dout, ref_cache)):
        assert_close(got, want, **tolerance(np.float64))
