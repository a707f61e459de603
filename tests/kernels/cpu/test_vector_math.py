"""Accuracy of :mod:`refvit.kernels.cpu.vector_math` over the whole range of each dtype, and its rule
at the ends: underflow to 0, overflow to inf, NaN and +-inf."""
import numpy as np
import pytest
from scipy.special import erfcx, expit

from refvit.kernels.cpu import vector_math as vm

DTYPES = [np.float32, np.float64]
LIMITS = {np.float32: (vm.EXP_LOWEST_F32, vm.EXP_HIGHEST_F32), np.float64: (vm.EXP_LOWEST, vm.EXP_HIGHEST)}
EXP_ULPS = 2  # measured: at most 1 ulp in both dtypes


def _exp(x, shift=0.0):
    result = x.copy()
    vm.exp_of(result, shift, np.empty_like(result))
    return result


def _every_binade(dtype, low, high, per_binade=2000, seed=0):
    """Arguments in ``[low, high)`` with ``per_binade`` random mantissas in every binade of either sign,
    from the smallest subnormal up, plus both limits' neighbours and the signed zeros."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    exponents = np.arange(info.minexp - info.nmant, int(np.ceil(np.log2(max(-low, high)))) + 1)
    magnitudes = np.ldexp(rng.uniform(1.0, 2.0, (exponents.size, per_binade)), exponents[:, None]).ravel()
    edges = [np.nextafter(dtype(low), dtype(np.inf)), dtype(low), np.nextafter(dtype(high), dtype(-np.inf)), 0.0, -0.0]
    x = np.concatenate([magnitudes, -magnitudes, edges]).astype(dtype)
    return x[(x >= low) & (x < high)]


def _ulps(result, exact, dtype):
    """``|result - exact|`` in ulps of the correctly rounded result, ``exact`` in extended precision."""
    exact = exact.astype(np.longdouble)
    return np.abs(result.astype(np.longdouble) - exact) / np.spacing(exact.astype(dtype)).astype(np.longdouble)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_within_two_ulps_over_every_binade(dtype):
    low, high = LIMITS[dtype]
    x = _every_binade(dtype, low, high)
    result = _exp(x)
    exact = np.exp(x.astype(np.longdouble))
    assert result.dtype == dtype
    assert np.all(np.isfinite(result)) and np.all(result >= np.finfo(dtype).tiny * (1 - 2 * np.finfo(dtype).eps))
    assert _ulps(result, exact, dtype).max() <= EXP_ULPS
    assert np.all(_exp(np.array([0.0, -0.0], dtype)) == 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_of_a_row_shift_equals_the_shifted_exp(dtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(-60.0, 0.0, 1000).astype(dtype)
    shift = rng.uniform(-5.0, 5.0, 1000).astype(dtype)
    np.testing.assert_array_equal(_exp(x, shift), _exp(x - shift))
    np.testing.assert_array_equal(_exp(x + dtype(3.0), 3.0), _exp(x + dtype(3.0) - dtype(3.0)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_ends(dtype):
    low, high = LIMITS[dtype]
    below = np.array([np.nextafter(dtype(low), dtype(-np.inf)), low - 1, -1e4, np.finfo(dtype).min, -np.inf], dtype)
    above = np.array([high, high + 1, 1e4, np.finfo(dtype).max, np.inf], dtype)
    np.testing.assert_array_equal(_exp(below), 0.0)  # below the smallest normal result: 0, never subnormal
    np.testing.assert_array_equal(_exp(above), np.inf)
    assert np.isnan(_exp(np.array([np.nan], dtype))[0])
    assert np.isnan(_exp(np.array([-np.inf], dtype), -np.inf)[0])  # a fully masked row: -inf - (-inf)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_in_python_states_the_compiled_rule(dtype):
    low, high = LIMITS[dtype]
    ends = [low - 1, -np.inf, np.inf, np.nan]
    x = np.concatenate([_every_binade(dtype, low, high, per_binade=20), ends]).astype(dtype)
    stated = x.copy()
    vm.exp_shifted(stated, 0.0, np.empty_like(stated))
    compiled = _exp(x)
    np.testing.assert_array_equal(np.isnan(stated), np.isnan(compiled))
    finite = np.isfinite(compiled)
    np.testing.assert_array_equal(stated[~finite & ~np.isnan(compiled)], compiled[~finite & ~np.isnan(compiled)])
    assert _ulps(compiled[finite], stated[finite], dtype).max() <= EXP_ULPS + 1


def test_erfcx_of_matches_scipy_over_the_half_line():
    z = np.concatenate([np.linspace(0.0, 30.0, 30001), np.logspace(-300, 300, 6001)])
    result = np.empty_like(z)
    vm.erfcx_of(z, result)
    assert np.max(np.abs(result / erfcx(z) - 1.0)) < 1.3e-9
    special = np.empty(2)
    vm.erfcx_of(np.array([np.inf, np.nan]), special)
    assert special[0] == 0.0 and np.isnan(special[1])


def test_erfcx_coefficients_are_the_documented_fit():
    refit = vm.fit_erfcx_polynomial()
    t = np.linspace(0.0, 1.0, 100_001)[1:]
    stored = t * np.polynomial.polynomial.polyval(t, vm.ERFCX_COEFFICIENTS)
    assert len(vm.ERFCX_COEFFICIENTS) == vm.ERFCX_DEGREE + 1
    np.testing.assert_allclose(t * np.polynomial.polynomial.polyval(t, refit), stored, rtol=1e-11)
    assert np.max(np.abs(stored / erfcx((1.0 / t - 1.0) / vm.ERFCX_T_SCALE) - 1.0)) < 1.3e-9


def test_stable_sigmoid_never_overflows():
    values = [vm.stable_sigmoid(v) for v in (-1000.0, -1.0, 0.0, 1.0, 1000.0)]
    np.testing.assert_allclose(values, expit([-1000.0, -1.0, 0.0, 1.0, 1000.0]), rtol=1e-15, atol=0)
    assert np.isnan(vm.stable_sigmoid(np.nan))


def test_exp_for_float32_results_within_1e_11():
    x = _every_binade(np.float64, vm.EXP_LOWEST, vm.EXP_HIGHEST, per_binade=500)
    result = x.copy()
    vm.exp_for_float32_of(result, 0.0, np.empty_like(result))
    exact = np.exp(x.astype(np.longdouble))
    assert np.max(np.abs(result.astype(np.longdouble) / exact - 1)) < 1e-11  # measured 9.4e-12
    ends = np.array([vm.EXP_LOWEST - 1, -np.inf, vm.EXP_HIGHEST, np.inf, np.nan])
    vm.exp_for_float32_of(ends, 0.0, np.empty_like(ends))
    np.testing.assert_array_equal(ends[:4], [0.0, 0.0, np.inf, np.inf])
    assert np.isnan(ends[4])
