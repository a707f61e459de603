"""The blocked sums of refvit/kernels/cpu/_broadcast.py (the backward of add and mul, the forward of mean)."""
import numpy as np
import pytest

from refvit.kernels.cpu import _broadcast


@pytest.mark.parametrize("shape, axes, layout", [
    ((8, 3136, 64), (0, 1), (1, 25088, 64)),       # a bias gradient
    ((8, 3136, 64), (1,), (8, 3136, 64)),          # the mean over the tokens
    ((64, 7, 7, 256), (1, 2), (64, 49, 256)),      # the mean over a map
    ((5, 6), (1,), (5, 6, 1)),                     # row sums
    ((5, 1, 6), (1,), (30, 1, 1)),                 # a size-1 axis summed: nothing to add
    ((4, 5), (), (20, 1, 1)),
    ((2, 3, 4, 5), (0, 2), None),                  # summed, kept, summed, kept: NumPy
])
def test_layout(shape, axes, layout):
    assert _broadcast.sum_layout(shape, axes) == layout


@pytest.mark.parametrize("shape, axes", [((3, 200, 5), (0, 1)), ((3, 130, 5), (1,)), ((7, 9), (1,)),
                                         ((2, 3, 4, 5), (0, 2)), ((1,), (0,)), ((4, 65), (0,))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_to_matches_a_float64_sum(rng, shape, axes, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    kept = tuple(n for a, n in enumerate(shape) if a not in axes)
    got = _broadcast.sum_to(x, axes, kept, scale=0.5)
    want = 0.5 * np.sum(x.astype(np.float64), axis=axes)
    assert got.dtype == dtype and got.shape == kept
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


def test_blocks_do_not_depend_on_the_thread_count(rng):
    """More rows than one block: the partial sums are per fixed block, not per thread."""
    import numba

    x = rng.standard_normal((2, 5 * _broadcast.SUM_BLOCK_ROWS + 3, 7)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _broadcast.sum_to(x, (1,), (2, 7))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(_broadcast.sum_to(x, (1,), (2, 7)), serial)
