"""The three ``cpu`` paths of ``na2d``: the width-vectorised kernels (stride 1, no causal mask), the
dense small-map kernels and the general kernels, each against the NumPy reference, directly at the
kernel-module boundary.

The shapes exercise what the width-vectorised path treats specially: border columns (clamped
windows) next to interior ones, several maps side by side in one wide row and split across tasks,
maps only as wide as the kernel, dilation groups of unequal size, and bias tables with and without
rows."""
import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import na2d as cpu_na2d
from refvit.kernels.cpu import na2d_dense, na2d_transposed
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
]
IDS = ["odd-head-dim", "many-maps", "kernel-covers-map", "dilation-unequal-groups", "dilation-no-rpb", "one-row"]


def _inputs(rng, batch, heads, size, head_dim, kernel_size, with_rpb):
    kernel_h, kernel_w = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
    q, k, v, dout = (rng.standard_normal((batch, heads) + size + (head_dim,)) for _ in range(4))
    rpb = rng.standard_normal((heads, 2 * kernel_h - 1, 2 * kernel_w - 1)) if with_rpb else None
    return q, k, v, dout, rpb


def _reference(q, k, v, dout, rpb, kernel_size, **options):
    out, cache = ops.na2d.forward(q, k, v, kernel_size, rpb=rpb, backend="numpy", **options)
    return out, cache, ops.na2d.backward(dout, cache)


def _run(path_forward, path_backward, dtype, q, k, v, dout, rpb, options):
    q, k, v, dout = (a.astype(dtype) for a in (q, k, v, dout))
    rpb = None if rpb is None else rpb.astype(dtype)
    out, attn = path_forward(q, k, v, rpb, options)
    grads = path_backward(dout, q, k, v, rpb, out, attn, options)
    assert out.dtype == dtype and all(g is None or g.dtype == dtype for g in grads)
    return out, attn, grads


PATHS = {
    "transposed": (na2d_transposed.forward, na2d_transposed.backward),
    "dense": (na2d_dense.forward, na2d_dense.backward),
    "general": (cpu_na2d.forward_general, cpu_na2d.backward_general),
}


@pytest.mark.parametrize("batch, heads, size, head_dim, kernel_size, dilation, with_rpb", SHAPES, ids=IDS)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_path_matches_numpy(rng, dtype, path, batch, heads, size, head_dim, kernel_size, dilation, with_rpb):
    q, k, v, dout, rpb = _inputs(rng, batch, heads, size, head_dim, kernel_size, with_rpb)
    expected_out, cache, expected_grads = _reference(q, k, v, dout, rpb, kernel_size, dilation=dilation)
    assert na2d_transposed.applies(cache.options)
    out, attn, grads = _run(*PATHS[path], dtype, q, k, v, dout, rpb, cache.options)
    tol = tolerance(dtype)
    assert_close(out, expected_out, **tol)
    assert_close(attn.reshape(cache.attn.shape), cache.attn, **tol)
    for got, want in zip(grads, expected_grads):
        assert (got is None) == (want is None)
        if want is not None:
            assert_close(got, want, **tol)


@pytest.mark.parametrize("options", [dict(stride=2), dict(is_causal=(True, False)), dict(is_causal=True, dilation=2),
                                     dict(stride=(1, 3), dilation=(2, 1))], ids=["stride", "causal-rows", "causal-dilated",
                                                                              "stride-dilated"])
@pytest.mark.parametrize("path", ["dense", "general"])
def test_strided_and_causal_paths_match_numpy(rng, dtype, path, options):
    q, k, v, dout, rpb = _inputs(rng, 2, 2, (7, 9), 4, 3, True)
    expected_out, cache, expected_grads = _reference(q, k, v, dout, rpb, 3, **options)
    out, attn, grads = _run(*PATHS[path], dtype, q, k, v, dout, rpb, cache.options)
    tol = tolerance(dtype)
    assert_close(out, expected_out, **tol)
    assert_close(attn.reshape(cache.attn.shape), cache.attn, **tol)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, **tol)


def test_dense_path_by_tokens_per_slot():
    _, cache = ops.na2d.forward(*(np.zeros((1, 1, 8, 8, 2)),) * 3, 3, backend="numpy")
    assert na2d_dense.applies(8, 8, cache.options)              # 64 tokens, 9 slots
    assert na2d_dense.applies(16, 16, cache.options)            # 28 tokens per slot
    assert not na2d_dense.applies(20, 20, cache.options)        # 44 per slot
    _, cache = ops.na2d.forward(*(np.zeros((1, 1, 56, 56, 2)),) * 3, 7, backend="numpy")
    assert not na2d_dense.applies(56, 56, cache.options)        # DiNAT-Mini's first level


def test_float64_agrees_with_numpy_to_rounding(rng):
    q, k, v, dout, rpb = _inputs(rng, 2, 2, (10, 12), 5, 5, True)
    expected_out, cache, expected_grads = _reference(q, k, v, dout, rpb, 5, dilation=(1, 2))
    out, _, grads = _run(na2d_transposed.forward, na2d_transposed.backward, np.float64, q, k, v, dout, rpb,
                         cache.options)
    for got, want in zip((out,) + grads, (expected_out,) + expected_grads):
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_paths_share_the_attention_cache(rng):
    # Both paths store the softmax weights as (B, heads, H, W, kh*kw), so either backward can
    # consume either forward's cache.
    q, k, v, dout, rpb = _inputs(rng, 1, 2, (8, 9), 4, 3, True)
    _, cache, _ = _reference(q, k, v, dout, rpb, 3)
    out, attn = na2d_transposed.forward(q, k, v, rpb, cache.options)
    general_out, general_attn = cpu_na2d.forward_general(q, k, v, rpb, cache.options)
    assert_close(out, general_out, **tolerance(np.float64))
    assert_close(attn, general_attn, **tolerance(np.float64))
    crossed = cpu_na2d.backward_general(dout, q, k, v, rpb, out, attn, cache.options)
    straight = na2d_transposed.backward(dout, q, k, v, rpb, out, attn, cache.options)
    for a, b in zip(crossed, straight):
        assert_close(a, b, **tolerance(np.float64))


@pytest.mark.parametrize("options, expected", [
    (dict(), True), (dict(dilation=2), True), (dict(stride=2), False), (dict(is_causal=(False, True)), False),
])
def test_dispatch_by_options(rng, options, expected):
    q, k, v, dout, rpb = _inputs(rng, 1, 1, (6, 6), 2, 3, True)
    _, cache = ops.na2d.forward(q, k, v, 3, rpb=rpb, backend="numpy", **options)
    assert na2d_transposed.applies(cache.options) is expected


def test_wide_rows_split_across_tasks(rng, monkeypatch):
    # More maps than one task takes: the wide row is cut between maps, and every cut must give
    # the same values as one task over the whole row.
    q, k, v, dout, rpb = _inputs(rng, 3, 2, (6, 7), 4, 3, True)
    _, cache = ops.na2d.forward(q, k, v, 3, rpb=rpb, backend="numpy")
    whole = _run(na2d_transposed.forward, na2d_transposed.backward, np.float64, q, k, v, dout, rpb, cache.options)
    monkeypatch.setattr(na2d_transposed, "TARGET_ROW_LENGTH", 7)  # one map per task
    split = _run(na2d_transposed.forward, na2d_transposed.backward, np.float64, q, k, v, dout, rpb, cache.options)
    for a, b in zip((whole[0], whole[1]) + whole[2], (split[0], split[1]) + split[2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype, int_dtype, ulps", [(np.float32, np.int32, 2), (np.float64, np.int64, 2)])
def test_vectorised_exp_agrees_with_numpy(dtype, int_dtype, ulps):
    from refvit.kernels.cpu import na2d_wide_rows

    rng = np.random.default_rng(0)
    shifted = np.concatenate(([0.0, -1e-7, -0.3465, -0.3466, -1.0, -20.5, -80.0], -rng.exponential(8.0, 200)))
    row = shifted.astype(dtype) + dtype(3.0)
    largest = np.full(row.shape, 3.0, dtype)
    total = np.ones(row.shape, dtype)
    expected = np.exp(row.astype(np.float64) - largest)
    na2d_wide_rows.exp_minus(row, largest, total, np.empty(row.shape, int_dtype), na2d_wide_rows.exp_constants(dtype))
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(row - expected) <= ulps * eps * expected)
    assert_close(total, 1.0 + row, rtol=0.0, atol=0.0)
    nan_row = np.array([np.nan, 0.0], dtype)
    na2d_wide_rows.exp_minus(nan_row, np.zeros(2, dtype), np.zeros(2, dtype), np.empty(2, int_dtype),
                             na2d_wide_rows.exp_constants(dtype))
    assert np.isnan(nan_row[0]) and nan_row[1] == 1.0


@pytest.mark.parametrize("width, dilation, expected", [
    (8, 1, {"forward": False, "backward": False}),      # the nano models' maps: general kernels
    (28, 1, {"forward": True, "backward": False}),
    (56, 1, {"forward": True, "backward": True}),       # DiNAT-Mini's first level
    (56, 4, {"forward": False, "backward": False}),     # dilation groups 14 columns wide
])
def test_dispatch_by_width(rng, width, dilation, expected):
    q, k, v, dout, rpb = _inputs(rng, 1, 1, (7, width), 2, 3, True)
    _, cache = ops.na2d.forward(q, k, v, 3, rpb=rpb, dilation=(1, dilation), backend="numpy")
    for direction, vectorised in expected.items():
        assert cpu_na2d._vectorised_path(direction, cache.options, width, q, k, v, rpb) is vectorised
    q[0, 0, 0, 0, 0] = np.nan
    assert not cpu_na2d._vectorised_path("forward", cache.options, width, q, k, v, rpb)


@pytest.mark.parametrize("path", ["dense", "vectorised-or-general"])
def test_non_finite_values_stay_in_their_own_map(monkeypatch, path):
    """A NaN in one batch element's map must not reach another element's outputs or gradients."""
    if path != "dense":
        monkeypatch.setattr(na2d_dense, "applies", lambda *args: False)
        monkeypatch.setattr(cpu_na2d, "VECTORISED_MIN_COLS", {"forward": 1, "backward": 1})  # any width
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 6, 7, 4)) for _ in range(3))
    q[0, 1, 2, 0, 1] = np.nan  # a border column of map (0, 1)
    out, cache = ops.na2d.forward(q, k, v, 3, backend="cpu")
    dout = rng.standard_normal(out.shape)
    dout[0, 0, 5, 6, 0] = np.inf
    dq, dk, dv, _ = ops.na2d.backward(dout, cache)
    for grad in (out, dq, dk, dv):
        assert np.isfinite(grad[1]).all()
    with np.errstate(invalid="ignore"):
        reference, ref_cache = ops.na2d.forward(q, k, v, 3, backend="numpy")
        reference_grads = ops.na2d.backward(dout, ref_cache)[:3]
    np.testing.assert_array_equal(np.isnan(out), np.isnan(reference))
    for got, want in zip((dq, dk, dv), reference_grads):
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
