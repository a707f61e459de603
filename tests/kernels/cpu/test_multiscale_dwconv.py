"""The cpu kernels of multiscale_dwconv (refvit/kernels/cpu/multiscale_dwconv.py) against the NumPy
reference on odd shapes (maps smaller than the largest kernel, one row, odd widths), in float32 and
float64; a NaN stays inside its own head's kernel on both the whole-row and the per-pixel runs; one
thread and two give the same bits."""
import numba
import numpy as np
import pytest

from refvit.kernels.cpu import multiscale_dwconv as kernel
from refvit.ops.multiscale_dwconv import _backward_numpy, _forward_numpy, kernel_size
from refvit.testing import assert_close
from tests.conftest import tolerance

SHAPES = [  # (batch, height, width, heads, channels per head)
    (2, 5, 7, 3, 2),
    (1, 1, 9, 4, 1),
    (3, 2, 3, 4, 3),
    (1, 9, 4, 2, 5),
    (2, 6, 6, 1, 4),
]


def _inputs(rng, batch, height, width, heads, per_head, dtype):
    x = rng.standard_normal((batch, height, width, heads * per_head)).astype(dtype)
    weights = tuple((0.5 * rng.standard_normal((per_head, 1, kernel_size(i), kernel_size(i)))).astype(dtype)
                    for i in range(heads))
    biases = tuple(rng.standard_normal(per_head).astype(dtype) for _ in range(heads))
    return x, weights, biases


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_and_backward_match_numpy(shape, dtype, with_bias):
    rng = np.random.default_rng(sum(shape))
    x, weights, biases = _inputs(rng, *shape, dtype)
    biases = biases if with_bias else None
    dout = rng.standard_normal(x.shape).astype(dtype)
    out = kernel.forward(x, weights, biases)
    assert out.dtype == dtype
    assert_close(out, _forward_numpy(x, weights, biases), name="out", **tolerance(dtype))
    got, want = kernel.backward(dout, x, weights, with_bias), _backward_numpy(dout, x, weights, with_bias)
    assert_close(got[0], want[0], name="dx", **tolerance(dtype))
    for head in range(shape[3]):
        assert got[1][head].dtype == dtype and got[1][head].shape == weights[head].shape
        assert_close(got[1][head], want[1][head], name=f"dweights[{head}]", **tolerance(dtype))
        if with_bias:
            assert_close(got[2][head], want[2][head], name=f"dbiases[{head}]", **tolerance(dtype))
    assert with_bias or got[2] is None


@pytest.mark.parametrize("channel", [0, 3, 6])  # heads 0 (radius 1), 1 (radius 2) and 3 (radius 4)
def test_nan_reaches_only_its_heads_kernel(channel):
    heads, per_head = 4, 2
    x, weights, biases = _inputs(np.random.default_rng(3), 1, 11, 11, heads, per_head, np.float32)
    x[0, 5, 5, channel] = np.nan
    radius = 1 + channel // per_head
    dout_with_nan = x  # dx gathers dout through the flipped kernels: the same reach
    for result in (kernel.forward(x, weights, biases), kernel.backward(dout_with_nan, x, weights, False)[0]):
        nan = np.isnan(result[0, :, :, channel])
        reached = np.zeros((11, 11), bool)
        reached[5 - radius:6 + radius, 5 - radius:6 + radius] = True
        assert (nan == reached).all()
        assert np.isfinite(np.delete(result, channel, axis=3)).all()


def test_one_and_two_threads_give_the_same_bits():
    x, weights, biases = _inputs(np.random.default_rng(5), 16, 8, 8, 4, 8, np.float32)
    dout = np.random.default_rng(6).standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        try:
            out = kernel.forward(x, weights, biases)
            dx, dweights, dbiases = kernel.backward(dout, x, weights, True)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append([out, dx, *dweights, *dbiases])
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)
