"""The `cpu` attention kernel's own code paths: query tiles and dbias buffers (its exponential:
``test_vector_math.py``)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.kernels.cpu import attention as kernel
from refvit.testing import check_backends
from tests.conftest import tolerance

B, H, NQ, NK, D, DV = 2, 2, 20, 7, 3, 4


@given(n_queries=st.integers(1, 3000), n_keys=st.integers(1, 5000), width=st.integers(1, 300))
def test_tile_rows_split_queries_evenly_below_the_serial_product_size(n_queries, n_keys, width):
    rows = kernel._tile_rows(n_queries, n_keys, width)
    n_tiles = -(-n_queries // rows)
    assert 1 <= rows <= n_queries
    assert rows * n_keys * width <= kernel.SERIAL_PRODUCT_SIZE or rows <= 8
    assert n_queries - (n_tiles - 1) * rows >= rows - n_tiles  # the last tile is not much shorter


def _inputs(rng, bias_shape):
    q = rng.standard_normal((B, H, NQ, D))
    k = rng.standard_normal((B, H, NK, D))
    v = rng.standard_normal((B, H, NK, DV))
    return (q, k, v), {"bias": None if bias_shape is None else rng.standard_normal(bias_shape)}


# bias shapes: full (one run per (b, head)), shared over the batch (a buffer per run), broadcast over
# queries, constant along the keys (every key's gradient lands in one slot)
BIAS_SHAPES = [None, (B, H, NQ, NK), (H, NQ, NK), (B, 1, 1, NK), (H, NQ, 1)]


@pytest.mark.parametrize("bias_shape", BIAS_SHAPES)
@pytest.mark.parametrize("runs", [1, 3])
def test_several_query_tiles_and_dbias_buffers_match_numpy(monkeypatch, dtype, bias_shape, runs, rng):
    monkeypatch.setattr(kernel, "SERIAL_PRODUCT_SIZE", 1)  # 8-row tiles: 20 queries in three tiles
    monkeypatch.setattr(kernel, "_shared_bias_runs", lambda n_heads: min(n_heads, runs))
    assert kernel._tile_rows(NQ, NK, D) == 7
    args, kwargs = _inputs(rng, bias_shape)
    check_backends(ops.attention, args, kwargs, backend="cpu", dtype=dtype, **tolerance(dtype))


def test_float64_kernels_match_numpy_to_rounding(rng):
    args, kwargs = _inputs(rng, (H, NQ, NK))
    out, cache = ops.attention.forward(*args, **kwargs, backend="cpu")
    ref, ref_cache = ops.attention.forward(*args, **kwargs, backend="numpy")
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    dout = rng.standard_normal(out.shape)
    for grad, ref_grad in zip(ops.attention.backward(dout, cache), ops.attention.backward(dout, ref_cache)):
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-13)
