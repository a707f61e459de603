"""The `cpu` stripe-attention kernels' own code paths: query tiles inside a window, the per-window
LePE parameter gradients, the loop kernels of small windows (blocks of windows side by side, the last
one partly filled), one thread against all threads, and float64 agreement with `numpy`."""
import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import _threads
from refvit.kernels.cpu import stripe_attention as kernel
from refvit.kernels.cpu import stripe_small
from refvit.testing import assert_close

op = ops.stripe_attention
EXACT = dict(rtol=1e-12, atol=1e-12)


def _inputs(rng, shape, lepe="weight_and_bias", dtype=np.float64):
    q, k, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    channels = shape[1] * shape[4]
    kwargs = {}
    if lepe != "none":
        kwargs["lepe_weight"] = (0.5 * rng.standard_normal((channels, 1, 3, 3))).astype(dtype)
    if lepe == "weight_and_bias":
        kwargs["lepe_bias"] = (0.5 * rng.standard_normal(channels)).astype(dtype)
    return q, k, v, kwargs


def _forward_backward(backend, q, k, v, stripe_size, kwargs, dout, scale=None):
    out, cache = op.forward(q, k, v, stripe_size, **kwargs, scale=scale, backend=backend)
    return [out] + [g for g in op.backward(dout, cache) if g is not None]


def _assert_matches_numpy(rng, shape, stripe_size, lepe="weight_and_bias", scale=None, **tolerances):
    q, k, v, kwargs = _inputs(rng, shape, lepe)
    dout = rng.standard_normal(shape)
    expected = _forward_backward("numpy", q, k, v, stripe_size, kwargs, dout, scale)
    got = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout, scale)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == np.float64 and g.shape == e.shape
        assert_close(g, e, **(tolerances or EXACT))


@pytest.mark.parametrize("n_tokens, rows", [(1, 1), (56, 56), (98, 98), (256, 256), (3136, 20), (300, 150)])
def test_tile_rows_split_windows_evenly_within_the_bound(n_tokens, rows):
    assert kernel._tile_rows(n_tokens) == rows
    tiles = -(-n_tokens // rows)
    assert rows * n_tokens <= max(kernel.TILE_ELEMENTS, 8 * n_tokens) and (tiles - 1) * rows < n_tokens


@pytest.mark.parametrize("stripe_size", [(4, 5), (20, 1), (1, 20)])
@pytest.mark.parametrize("lepe", ["none", "weight", "weight_and_bias"])
def test_several_query_tiles_per_window_match_numpy(monkeypatch, rng, stripe_size, lepe):
    # 20 tokens per window with 8-row tiles: tiles of 7, 7 and 6 rows, dk and dv summed over them
    monkeypatch.setattr(kernel, "TILE_ELEMENTS", 16)
    assert kernel._tile_rows(20) == 7
    _assert_matches_numpy(rng, (2, 2, 20, 20, 3), stripe_size, lepe)


@pytest.mark.parametrize("shape, stripe_size", [((1, 1, 16, 16, 8), (16, 1)), ((1, 1, 16, 16, 8), (1, 16)),
                                                ((2, 3, 6, 6, 4), (6, 3)), ((1, 2, 7, 7, 5), (7, 7)),
                                                ((1, 2, 3, 6, 2), (1, 1))])
def test_float64_matches_numpy_closely(rng, shape, stripe_size):
    _assert_matches_numpy(rng, shape, stripe_size)


def test_large_logits_and_zero_scale(rng):
    q, k, v, kwargs = _inputs(rng, (1, 2, 6, 4, 3))
    for scale, factor in [(0.0, 1.0), (1.0, 30.0)]:   # uniform weights; exponents far below exp's range
        dout = rng.standard_normal(q.shape)
        expected = _forward_backward("numpy", factor * q, k, v, (3, 2), kwargs, dout, scale)
        got = _forward_backward("cpu", factor * q, k, v, (3, 2), kwargs, dout, scale)
        for g, e in zip(got, expected):
            assert_close(g, e, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_thread_and_all_threads_agree_exactly(monkeypatch, rng, dtype):
    shape, stripe_size = (2, 2, 12, 12, 4), (12, 2)
    q, k, v, kwargs = _inputs(rng, shape, dtype=dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    parallel = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 1 << 62)
    serial = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout)
    for p, s in zip(parallel, serial):
        assert p.dtype == dtype
        np.testing.assert_array_equal(p, s)


def test_float32_matches_numpy(rng):
    shape, stripe_size = (1, 2, 14, 14, 8), (14, 7)
    q, k, v, kwargs = _inputs(rng, shape, dtype=np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    expected = _forward_backward("numpy", q, k, v, stripe_size, kwargs, dout)
    got = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout)
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert_close(g, e, rtol=2e-4, atol=2e-4)


# Small windows (the loop kernels): 80 windows of a head make a full block of 64 and one of 16; 16 tokens
# take the loop forward and the BLAS backward; a block with a single window; one-token windows.
SMALL_PROBLEMS = [((5, 2, 4, 8, 3), (1, 2)), ((3, 1, 8, 8, 4), (8, 2)), ((2, 3, 4, 6, 5), (2, 3)),
                  ((1, 1, 2, 4, 2), (2, 4)), ((70, 1, 1, 1, 2), (1, 1))]


@pytest.mark.parametrize("shape, stripe_size", SMALL_PROBLEMS)
@pytest.mark.parametrize("lepe", ["none", "weight", "weight_and_bias"])
def test_small_windows_match_numpy(rng, shape, stripe_size, lepe):
    assert stripe_size[0] * stripe_size[1] <= stripe_small.FORWARD_TOKENS
    _assert_matches_numpy(rng, shape, stripe_size, lepe)


@pytest.mark.parametrize("stripe_size", [(4, 5), (20, 1), (10, 10)])
def test_loop_kernels_on_larger_windows_match_numpy(monkeypatch, rng, stripe_size):
    monkeypatch.setattr(stripe_small, "FORWARD_TOKENS", 1000)
    monkeypatch.setattr(stripe_small, "BACKWARD_TOKENS", 1000)
    _assert_matches_numpy(rng, (2, 2, 20, 20, 3), stripe_size)


@pytest.mark.parametrize("stripe_size, forward_loops, backward_loops", [((8, 2), True, False), ((2, 4), True, True),
                                                                        ((4, 5), False, False)])
def test_window_size_picks_the_kernels(monkeypatch, rng, stripe_size, forward_loops, backward_loops):
    called = []
    for name in ("_forward_blocks", "_backward_blocks"):
        compiled = getattr(stripe_small, name)
        monkeypatch.setattr(stripe_small, name, lambda *args, _f=compiled, _n=name: called.append(_n) or _f(*args))
    q, k, v, kwargs = _inputs(rng, (1, 1, 8, 20, 2))
    _forward_backward("cpu", q, k, v, stripe_size, kwargs, np.ones_like(q))
    assert called == ["_forward_blocks"] * forward_loops + ["_backward_blocks"] * backward_loops


@pytest.mark.parametrize("shape, stripe_size", [((70, 2, 2, 4, 4), (2, 1)), ((9, 1, 8, 8, 4), (8, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_windows_one_thread_and_all_threads_agree_exactly(monkeypatch, rng, shape, stripe_size, dtype):
    q, k, v, kwargs = _inputs(rng, shape, dtype=dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    parallel = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 1 << 62)
    serial = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout)
    for p, s in zip(parallel, serial):
        assert p.dtype == dtype
        np.testing.assert_array_equal(p, s)


@pytest.mark.parametrize("stripe_size", [(8, 2), (2, 4), (1, 1)])
def test_small_windows_float32_matches_numpy(rng, stripe_size):
    shape = (9, 2, 8, 8, 16)
    q, k, v, kwargs = _inputs(rng, shape, dtype=np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    expected = _forward_backward("numpy", q, k, v, stripe_size, kwargs, dout)
    got = _forward_backward("cpu", q, k, v, stripe_size, kwargs, dout)
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert_close(g, e, rtol=2e-4, atol=2e-4)
