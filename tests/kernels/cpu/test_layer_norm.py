"""The ``cpu`` layer-norm kernels against the NumPy reference: row counts around the blocks of the
backward's parameter sums, float32 and float64, and results that do not depend on the thread count."""
import numpy as np
import pytest

from refvit.kernels.cpu import layer_norm as layer_norm_cpu
from refvit.kernels.cpu._threads import run_with_threads
from refvit.ops import layer_norm as layer_norm_op
from refvit.testing import assert_close
from tests.conftest import tolerance

BLOCK = layer_norm_cpu.ROWS_PER_BLOCK


def _inputs(rows, channels, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, channels)) * 3.0 + 1.5).astype(dtype)
    dout = rng.standard_normal((rows, channels)).astype(dtype)
    weight = rng.standard_normal(channels).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    return x, dout, weight, bias


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, channels", [(1, 5), (BLOCK - 1, 32), (BLOCK + 1, 64), (3 * BLOCK + 7, 128)])
def test_forward_and_backward_match_the_reference(dtype, rows, channels):
    x, dout, weight, bias = _inputs(rows, channels, dtype)
    y, mean, rstd = layer_norm_cpu.forward(x, weight, bias, 1e-5)
    ref_y, ref_mean, ref_rstd = layer_norm_op._forward_numpy(x, weight, bias, 1e-5)
    tol = tolerance(dtype)
    assert y.dtype == dtype
    assert_close(y, ref_y, **tol, name="y")
    dx, dweight, dbias = layer_norm_cpu.backward(dout, x, mean, rstd, weight)
    expected = layer_norm_op._backward_numpy(dout, x, ref_mean, ref_rstd, weight)
    for name, got, want in zip(("dx", "dweight", "dbias"), (dx, dweight, dbias), expected):
        assert got.dtype == dtype
        assert_close(got, want, **tol, name=name)


def test_results_do_not_depend_on_the_thread_count():
    x, dout, weight, bias = _inputs(5 * BLOCK + 3, 48, np.float32, seed=1)
    y, mean, rstd = layer_norm_cpu.forward(x, weight, bias, 1e-5)
    one = run_with_threads(layer_norm_cpu.forward, (x, weight, bias, 1e-5), {}, 1)
    np.testing.assert_array_equal(y, one[0])
    grads = layer_norm_cpu.backward(dout, x, mean, rstd, weight)
    grads_one = run_with_threads(layer_norm_cpu.backward, (dout, x, mean, rstd, weight), {}, 1)
    for got, want in zip(grads, grads_one):
        np.testing.assert_array_equal(got, want)
