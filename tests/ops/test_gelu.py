"""gelu: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from scipy.special import erf

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import random_array, seeds, shapes
from tests.conftest import tolerance

# The op's example (approximate="none") is checked in test_contract.py; here the tanh form.


def test_gradcheck_tanh(rng):
    x = rng.standard_normal((3, 5)) * 2
    gradcheck(ops.gelu, (x,), dict(approximate="tanh"))


@given(shape=shapes(max_dims=3), seed=seeds())
def test_vjp_tanh(shape, seed):
    check_vjp(ops.gelu, (random_array(shape, seed, scale=2.0),), dict(approximate="tanh"))


def test_backends_match_numpy_tanh(kernel_backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 3
    check_backends(ops.gelu, (x,), dict(approximate="tanh"), backend=kernel_backend, dtype=dtype,
                   **tolerance(dtype))


def test_exact_formula_and_known_values():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    out, _ = ops.gelu.forward(x, backend="numpy")
    assert_close(out, x * 0.5 * (1 + erf(x / np.sqrt(2))))
    assert out[2] == 0.0
    assert_close(ops.gelu.forward(np.array([1.0]), backend="numpy")[0], np.array([0.8413447460685429]))


def test_tanh_close_to_exact(rng):
    x = rng.standard_normal(100)
    exact, _ = ops.gelu.forward(x, backend="numpy")
    approx, _ = ops.gelu.forward(x, approximate="tanh", backend="numpy")
    assert np.max(np.abs(exact - approx)) < 1e-3


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_nonfinite_values_are_not_clipped(backend):
    with np.errstate(invalid="ignore"):
        out, _ = ops.gelu.forward(np.array([np.nan, np.inf, 1.0]), backend=backend)
    assert np.isnan(out[0]) and not np.isfinite(out[1]) and np.isfinite(out[2])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    with pytest.raises(TypeError, match="gelu: 'x'"):
        ops.gelu.forward("abc", backend=backend)
    with pytest.raises(ValueError, match="gelu: 'approximate'"):
        ops.gelu.forward(np.zeros(3), approximate="fast", backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dimensional_input_keeps_its_shape(backend):
    out, cache = ops.gelu.forward(np.array(0.5), backend=backend)
    (dx,) = ops.gelu.backward(np.array(1.0), cache)
    assert out.shape == () and dx.shape == ()
