"""The window walks of refvit/kernels/cpu/_pool.py."""
import numpy as np
import pytest

from refvit.kernels.cpu import _pool
from refvit.ops._conv_geometry import Window


@pytest.mark.parametrize("stride, pad, kernel, size", [(1, 0, 3, 5), (2, 1, 3, 7), (3, 1, 2, 4), (1, 2, 5, 3)])
def test_window_span_is_the_in_range_taps(stride, pad, kernel, size):
    for position in range((size + 2 * pad - kernel) // stride + 1):
        inside = [position * stride - pad + t for t in range(kernel) if 0 <= position * stride - pad + t < size]
        first, last = _pool.window_span(position, stride, pad, kernel, size)
        assert list(range(first, last)) == inside


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_walk_serves_both_pools(dtype):
    """``selected`` None gives the average (padding counted as zeros); an array gives the maximum
    and the position ``h*W + w`` of its first occurrence."""
    window = Window((3, 2), (2, 1), (1, 1), (1, 1))
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, (2, 7, 6, 3)).astype(dtype)  # small integers: ties, and exact sums
    out_h, out_w = window.output_size(7, 6)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=np.nan)
    average = np.zeros((2, out_h, out_w, 3), dtype)
    _pool.pool_forward(x, average, None, *_pool.window_args(window))
    maximum = np.empty_like(average)
    selected = np.empty(average.shape, np.int64)
    _pool.pool_forward(x, maximum, selected, *_pool.window_args(window))
    for u in range(out_h):
        for v in range(out_w):
            block = padded[:, 2 * u:2 * u + 3, v:v + 2]
            scaled = np.nansum(block, axis=(1, 2)).astype(np.float64) * (1.0 / 6)  # the kernel's scale, in float64
            np.testing.assert_array_equal(average[:, u, v], scaled.astype(dtype))
            np.testing.assert_array_equal(maximum[:, u, v], np.nanmax(block, axis=(1, 2)))
            flat = np.where(np.isnan(block), -np.inf, block).reshape(2, 6, 3).argmax(axis=1)
            h, w = 2 * u - 1 + flat // 2, v - 1 + flat % 2
            np.testing.assert_array_equal(selected[:, u, v], h * 6 + w)
