"""The kernels of the split neighbourhood-attention ops (refvit/kernels/cpu/na_split.py and the 1-D
entries) against the NumPy reference, on windows the op examples leave out: causal axes (empty slots,
-inf logits), strides, per-axis dilation, one key per window, float32 and float64. ``check_split_ops``
runs for the cuda kernels too (tests/kernels/cuda/test_na_split.py)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close
from refvit.testing.strategies import seeds
from tests.conftest import tolerance
from tests.ops.test_neighborhood_properties import axes


def _run(op, arrays, window, backend, dout):
    out, cache = op.forward(*arrays, **window, backend=backend)
    grads = op.backward(dout, cache)
    return [np.asarray(out)] + [None if g is None else np.asarray(g) for g in grads]


def check_split_ops(backend, spatial_axes, batch, heads, head_dim, with_rpb, seed, dtype):
    """``na{1,2}d_qk`` and ``na{1,2}d_av`` on ``backend`` equal ``numpy``: outputs (the -inf of empty
    slots included) and every gradient. ``spatial_axes``: one ``(length, kernel, dilation, stride,
    causal)`` per axis."""
    rng = np.random.default_rng(seed)
    lengths, kernels, dilations, strides, causal = zip(*spatial_axes)
    prefix = "na1d" if len(spatial_axes) == 1 else "na2d"
    window = dict(kernel_size=kernels, dilation=dilations, stride=strides, is_causal=causal)
    shape = (batch, heads) + lengths + (head_dim,)
    slots = int(np.prod(kernels))
    q, k, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    rpb = rng.standard_normal((heads,) + tuple(2 * n - 1 for n in kernels)).astype(dtype) if with_rpb else None
    attn = rng.standard_normal(shape[:-1] + (slots,)).astype(dtype)
    dlogits = rng.standard_normal(attn.shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    tol = tolerance(dtype)
    qk, av = getattr(ops, f"{prefix}_qk"), getattr(ops, f"{prefix}_av")
    cases = ((qk, (q, k), dict(window, rpb=rpb, scale=0.7), dlogits), (av, (attn, v), window, dout))
    for op, arrays, options, upstream in cases:
        got = _run(op, arrays, options, backend, upstream)
        want = _run(op, arrays, options, "numpy", upstream)
        assert (np.isneginf(got[0]) == np.isneginf(want[0])).all(), f"{op.OP}: empty slots"
        for i, (g, w) in enumerate(zip(got, want)):
            if w is None:
                assert g is None
                continue
            assert g.dtype == dtype and g.shape == w.shape
            finite = np.isfinite(w)
            assert_close(g[finite], w[finite], **tol, name=f"{op.OP} ({backend}) result {i}")


@given(rows=axes(), cols=axes(), heads=st.integers(1, 3), head_dim=st.integers(1, 5), with_rpb=st.booleans(),
       seed=seeds(), dtype=st.sampled_from([np.float32, np.float64]))
def test_2d_kernels_match_numpy(rows, cols, heads, head_dim, with_rpb, seed, dtype):
    check_split_ops("cpu", (rows, cols), 2, heads, head_dim, with_rpb, seed, dtype)


@given(axis=axes(max_kernel=7, extra=6), heads=st.integers(1, 3), head_dim=st.integers(1, 5),
       with_rpb=st.booleans(), seed=seeds(), dtype=st.sampled_from([np.float32, np.float64]))
def test_1d_kernels_match_numpy(axis, heads, head_dim, with_rpb, seed, dtype):
    check_split_ops("cpu", (axis,), 2, heads, head_dim, with_rpb, seed, dtype)


@pytest.mark.parametrize("spatial_axes", [((14, 7, 2, 1, False), (14, 7, 2, 1, False)),   # DiNAT's dilated 7x7
                                          ((9, 3, 1, 3, True), (8, 5, 1, 2, False))])
def test_model_sized_windows_match_numpy(spatial_axes):
    check_split_ops("cpu", spatial_axes, 2, 2, 8, True, 3, np.float64)
