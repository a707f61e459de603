"""The float32 path of the ``cpu`` GELU kernels (float32 math on the constants of
:mod:`refvit.kernels.cpu.vector_math`, tested in ``test_vector_math.py``): accuracy in float32 ulps
against float64 formulas, non-finite values, vector-loop and chunk edges."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import erfcx, expit, ndtr

from refvit import ops
from refvit.kernels.cpu import gelu as gelu_cpu
from refvit.kernels.cpu._threads import run_with_threads
from refvit.testing.strategies import random_array, seeds, shapes

TANH_COEFF = 0.044715
SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
FORMS = [False, True]  # tanh_approx
FORWARD_ULPS = 8  # measured: at most 6 (exact) and 3 (tanh) over full_range_float32
BACKWARD_ULPS = 8
CANCELLATION = 1e-6  # of the two terms' magnitudes, near the derivative's zero (measured: under 4e-7)
FLUSHED = 1e-35  # results smaller than this may come out as 0 (exp below the least normal float32)


def full_range_float32(rng):
    """float32 values over [-20, 20], tiny ones down to the smallest subnormal, and huge ones."""
    tiny = np.logspace(-45, 0, 4001)
    return np.concatenate([
        np.linspace(-20.0, 20.0, 400_001), rng.uniform(-15.0, 15.0, 100_000), tiny, -tiny,
        [0.0, -0.0, 1e30, -1e30, 3e38, -3e38],
    ]).astype(np.float32)


def reference(x, tanh_approx):
    """float64 ``(y, dy/dx, scale)`` without cancellation in either tail; ``scale`` is the sum of
    the magnitudes of the two terms of ``dy/dx``, whose difference vanishes near ``x = -0.75``."""
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if tanh_approx:
            twice_u = 2.0 * SQRT_2_OVER_PI * (x + TANH_COEFF * x**3)
            first = expit(twice_u)
            second = 2.0 * x * first * expit(-twice_u) * SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_COEFF * x * x)
        else:
            first = ndtr(x)
            second = x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    return x * first, first + second, np.abs(first) + np.abs(second)


def float32_ulps(result, expected):
    """``|result - expected|`` in ulps of ``expected`` rounded to float32 (subnormal ulps below)."""
    rounded = expected.astype(np.float32)
    return np.abs(result.astype(np.float64) - rounded) / np.spacing(np.abs(rounded)).astype(np.float64)


def forward_errors_within_bounds(y, expected):
    """Within :data:`FORWARD_ULPS` ulps, or :data:`FLUSHED` absolutely for the flushed tail."""
    close = np.abs(y.astype(np.float64) - expected) <= FLUSHED
    return np.all(close | (float32_ulps(y, expected) <= FORWARD_ULPS))


@pytest.mark.parametrize("tanh_approx", FORMS)
def test_float32_forward_within_a_few_ulps(tanh_approx):
    x = full_range_float32(np.random.default_rng(0))
    y = gelu_cpu.forward(x, tanh_approx)
    expected, _, _ = reference(x, tanh_approx)
    assert y.dtype == np.float32
    assert forward_errors_within_bounds(y, expected)
    normal = np.abs(expected) >= 1e-30
    assert float32_ulps(y, expected)[normal & (np.abs(x) < 9)].max() <= FORWARD_ULPS


@pytest.mark.parametrize("tanh_approx", FORMS)
def test_float32_backward_within_a_few_ulps_or_cancellation_level(tanh_approx):
    x = full_range_float32(np.random.default_rng(1))
    dout = np.random.default_rng(2).uniform(0.5, 2.0, x.shape).astype(np.float32)
    dx = gelu_cpu.backward(dout, x, tanh_approx)
    _, slope, scale = reference(x, tanh_approx)
    expected = dout * slope
    allowed = np.maximum.reduce([BACKWARD_ULPS * np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64),
                                 CANCELLATION * dout * scale, np.full(x.shape, FLUSHED)])
    assert dx.dtype == np.float32
    assert np.all(np.abs(dx - expected) <= allowed)


@pytest.mark.parametrize("tanh_approx", FORMS)
def test_nonfinite_and_extreme_values_give_the_numpy_reference(tanh_approx):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 3.4e38, -3.4e38, 1e-45], np.float32)
    approximate = "tanh" if tanh_approx else "none"
    with np.errstate(all="ignore"):
        out, cache = ops.gelu.forward(x, approximate=approximate, backend="cpu")
        (dx,) = ops.gelu.backward(np.ones_like(x), cache)
        ref_out, ref_cache = ops.gelu.forward(x.astype(np.float64), approximate=approximate, backend="numpy")
        (ref_dx,) = ops.gelu.backward(np.ones(x.shape), ref_cache)
    np.testing.assert_array_equal(out[:-1], ref_out[:-1].astype(np.float32))  # NaN where NaN
    np.testing.assert_array_equal(dx, ref_dx.astype(np.float32))
    assert out[-1] in (0.0, np.float32(1e-45))  # x/2 with x the smallest subnormal: a tie


@pytest.mark.parametrize("tanh_approx", FORMS)
@pytest.mark.parametrize("size", [1, 15, 17, gelu_cpu.CHUNK - 1, 2 * gelu_cpu.CHUNK + 5])
def test_every_block_and_chunk_is_written(tanh_approx, size):
    x = np.random.default_rng(size).standard_normal(size).astype(np.float32) * 4
    dout = np.ones_like(x)
    expected, slope, _ = reference(x, tanh_approx)
    np.testing.assert_allclose(gelu_cpu.forward(x, tanh_approx), expected, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(gelu_cpu.backward(dout, x, tanh_approx), slope, rtol=1e-6, atol=1e-6)


def test_results_do_not_depend_on_the_thread_count():
    x = np.random.default_rng(3).standard_normal(3 * gelu_cpu.CHUNK).astype(np.float32)
    for tanh_approx in FORMS:
        one_thread = run_with_threads(gelu_cpu.forward, (x, tanh_approx), {}, 1)
        np.testing.assert_array_equal(gelu_cpu.forward(x, tanh_approx), one_thread)


@given(shape=shapes(max_dims=3), seed=seeds(), scale=st.sampled_from([0.1, 3.0, 12.0]),
       tanh_approx=st.booleans())
def test_float32_op_within_a_few_ulps_on_drawn_shapes(shape, seed, scale, tanh_approx):
    x = random_array(shape, seed, dtype=np.float32, scale=scale)
    out, _ = ops.gelu.forward(x, approximate="tanh" if tanh_approx else "none", backend="cpu")
    expected, _, _ = reference(x, tanh_approx)
    assert out.shape == x.shape and forward_errors_within_bounds(out, expected)
