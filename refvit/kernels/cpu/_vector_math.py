r"""Elementwise ``exp`` and ``erfc`` over float64 blocks, in loops that vectorise.

A loop that calls ``math.exp`` or ``math.erf`` per element calls libm per element and never
vectorises. The helpers below use only ``+ - * /``, ``floor``, comparisons and integer shifts, so
LLVM turns each loop into SIMD code. They work on float64 blocks of about a thousand elements
(small enough to stay in cache) that the caller fills and reads; each helper names its scratch.

**exp.** :math:`e^a = 2^k e^r` with :math:`k = \lfloor a \log_2 e + \tfrac12 \rfloor` and
:math:`r = a - k \ln 2`, :math:`|r| \le \tfrac12 \ln 2`, where :math:`\ln 2` is split in a high part
with few significant bits (so :math:`k \cdot` it is exact) and a low part. :math:`e^r` is its Taylor
polynomial of degree 9 (truncation :math:`(\ln 2/2)^{10}/10! < 7 \cdot 10^{-12}` relative);
:math:`2^k` is made by writing :math:`k + 1023` into the exponent bits of an int64 scratch array
viewed as float64. Arguments below :data:`EXP_LOWEST` give 0 (the true value is below
:math:`3.3 \cdot 10^{-308}`), above :data:`EXP_HIGHEST` give ``inf``; NaN stays NaN.

**erfc.** For :math:`z \ge 0`, :math:`\operatorname{erfc}(z) = e^{-z^2} \operatorname{erfcx}(z)`
where the scaled complement :math:`\operatorname{erfcx}(z) = e^{z^2} \operatorname{erfc}(z)` falls
smoothly from 1 at 0 like :math:`1/(z\sqrt\pi)`. With :math:`t = 1/(1 + z/2) \in (0, 1]` it is
approximated by :math:`t\,Q(t)`, :math:`Q` a polynomial of degree 12 (:data:`ERFCX_COEFFICIENTS`,
increasing powers), made by :func:`fit_erfcx_polynomial`: a least-squares fit of the relative
error :math:`t Q(t)/\operatorname{erfcx}(z) - 1` on 2000 Chebyshev nodes of :math:`t \in (0, 1)`,
in the Chebyshev basis of :math:`2t - 1`, converted to powers of :math:`t`
(reference values: ``scipy.special.erfcx``). Maximum relative error of :math:`t Q(t)` over all
:math:`z \ge 0`: :math:`1.3 \cdot 10^{-9}`, about a fiftieth of a float32 ulp, so float32 results rounded
from these float64 values are within one ulp of the correctly rounded ones. This is an accuracy for
float32 results; float64 kernels keep libm.

Every loop reads some arrays and writes others (an element may be read and rewritten in place):
LLVM vectorises a loop only after a run-time check that its arrays do not overlap, and falls back
to scalar code when they do, hence "must not overlap" below. The helpers are compiled with
``error_model="numpy"``: a float division by zero gives inf instead of raising, which would need
a branch per element.
"""
import math

import numpy as np
from numba import njit

EXP_LOWEST = -708.0
EXP_HIGHEST = 709.0
LOG2_E = 1.4426950408889634
LN2_HIGH = 0.693145751953125  # 45426 / 2**16: k * LN2_HIGH is exact for |k| < 2**37
LN2_LOW = 1.4286068203094172321e-06  # ln 2 - LN2_HIGH
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(10))  # 1/0! .. 1/9!

ERFCX_T_SCALE = 0.5  # t = 1 / (1 + ERFCX_T_SCALE * z)
ERFCX_DEGREE = 12
ERFCX_COEFFICIENTS = (
    0.2820947919313448, 0.2820947426764416, 0.2468352639797861, 0.1762729427229635,
    0.08391796058037006, -0.003291917942837716, -0.07474961199103601, 0.047522991999793214,
    -0.31819303003587956, 0.6297682140967589, -0.5394593259443348, 0.22522182770864313,
    -0.03803485103819895,
)


def fit_erfcx_polynomial(degree=ERFCX_DEGREE, nodes=2000):
    """Coefficients ``q_0 .. q_degree`` (increasing powers of ``t``) with
    ``erfcx(z) ~ t * sum_j q_j t**j``, ``t = 1/(1 + z/2)``; see the module docstring."""
    from numpy.polynomial import chebyshev
    from scipy.special import erfcx

    t = 0.5 + 0.5 * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)
    target = erfcx((1.0 / t - 1.0) / ERFCX_T_SCALE) / t
    rows = chebyshev.chebvander(2.0 * t - 1.0, degree) / target[:, None]
    in_chebyshev, *_ = np.linalg.lstsq(rows, np.ones(nodes), rcond=None)
    in_s = chebyshev.cheb2poly(in_chebyshev)  # powers of s = 2t - 1
    in_t = np.zeros(1)
    for c in in_s[::-1]:  # Horner in s, with s = -1 + 2t as a polynomial in t
        in_t = np.polynomial.polynomial.polyadd(np.polynomial.polynomial.polymul(in_t, [-1.0, 2.0]), [c])
    return in_t


@njit(cache=True, error_model="numpy")
def exp_of(arguments, result, bits):
    """``result[i] = exp(arguments[i])`` for the ``n = len(arguments)`` float64 elements, to a
    relative ``1e-11``; ``bits`` is int64 scratch of at least ``n`` elements. The three arrays must
    not overlap."""
    n = arguments.shape[0]
    c0, c1, c2, c3, c4 = _EXP_TAYLOR[0], _EXP_TAYLOR[1], _EXP_TAYLOR[2], _EXP_TAYLOR[3], _EXP_TAYLOR[4]
    c5, c6, c7, c8, c9 = _EXP_TAYLOR[5], _EXP_TAYLOR[6], _EXP_TAYLOR[7], _EXP_TAYLOR[8], _EXP_TAYLOR[9]
    powers = bits[:n].view(np.float64)
    for i in range(n):
        a = arguments[i]
        a = a if a > EXP_LOWEST else EXP_LOWEST  # NaN -> EXP_LOWEST: k stays a small integer
        a = a if a < EXP_HIGHEST else EXP_HIGHEST
        k = np.floor(a * LOG2_E + 0.5)
        r = (a - k * LN2_HIGH) - k * LN2_LOW
        bits[i] = (np.int64(k) + 1023) << 52
        result[i] = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * (
            c8 + r * c9))))))))
    for i in range(n):
        a = arguments[i]
        value = result[i] * powers[i]
        value = 0.0 if a < EXP_LOWEST else value
        value = np.inf if a > EXP_HIGHEST else value
        result[i] = a if a != a else value


@njit(cache=True, error_model="numpy")
def erfcx_of(z, result):
    """``result[i] = exp(z[i]**2) * erfc(z[i])`` for ``z[i] >= 0`` (``inf`` -> 0, NaN -> NaN), to
    a relative ``1.3e-9``; ``z`` and ``result`` must not overlap."""
    q0, q1, q2, q3, q4, q5, q6 = (ERFCX_COEFFICIENTS[0], ERFCX_COEFFICIENTS[1], ERFCX_COEFFICIENTS[2],
                                  ERFCX_COEFFICIENTS[3], ERFCX_COEFFICIENTS[4], ERFCX_COEFFICIENTS[5],
                                  ERFCX_COEFFICIENTS[6])
    q7, q8, q9, q10, q11, q12 = (ERFCX_COEFFICIENTS[7], ERFCX_COEFFICIENTS[8], ERFCX_COEFFICIENTS[9],
                                 ERFCX_COEFFICIENTS[10], ERFCX_COEFFICIENTS[11], ERFCX_COEFFICIENTS[12])
    for i in range(z.shape[0]):
        t = 1.0 / (1.0 + ERFCX_T_SCALE * z[i])
        result[i] = t * (q0 + t * (q1 + t * (q2 + t * (q3 + t * (q4 + t * (q5 + t * (q6 + t * (
            q7 + t * (q8 + t * (q9 + t * (q10 + t * (q11 + t * q12))))))))))))


@njit(cache=True, error_model="numpy")
def normal_cdf_and_gaussian(x, cdf, gaussian, scratch, bits):
    r"""``cdf[i] = Phi(x[i])`` (standard normal CDF) and ``gaussian[i] = exp(-x[i]**2 / 2)`` for
    the ``n = len(x)`` elements of ``x`` (float32 or float64), into float64 ``cdf`` and ``gaussian``;
    ``scratch`` is float64 ``(2, >= n)``, ``bits`` int64 ``(>= n)``. No two arrays may overlap.

    With :math:`z = |x|/\sqrt2`: :math:`e^{-x^2/2} = e^{-z^2}`,
    :math:`\operatorname{erfc}(z) = e^{-z^2}\operatorname{erfcx}(z)`, and
    :math:`\Phi(x) = 1 - \operatorname{erfc}(z)/2` for :math:`x \ge 0`, :math:`\operatorname{erfc}(z)/2`
    for :math:`x < 0` (the left tail without cancellation). ``Phi(inf) = 1``, ``Phi(-inf) = 0``."""
    n = x.shape[0]
    z, minus_z_squared = scratch[0, :n], scratch[1, :n]
    sqrt_half = 0.7071067811865476
    for i in range(n):
        z[i] = abs(x[i]) * sqrt_half
        minus_z_squared[i] = -(z[i] * z[i])
    exp_of(minus_z_squared, gaussian, bits)
    erfcx_of(z, cdf)
    for i in range(n):
        half_erfc = 0.5 * gaussian[i] * cdf[i]
        cdf[i] = 1.0 - half_erfc if x[i] >= 0.0 else half_erfc


@njit(cache=True, error_model="numpy")
def sigmoid_and_slope_of(arguments, sigmoid, slope, scratch, bits):
    r"""``sigmoid[i] = 1/(1 + exp(-a))`` and ``slope[i] = sigmoid(a) sigmoid(-a)`` (its derivative)
    for ``a = arguments[i]``, ``n = len(arguments)`` float64 elements; ``scratch`` float64 and
    ``bits`` int64 of at least ``n`` elements. No two arrays may overlap.

    With :math:`e = e^{-|a|} \in (0, 1]` (never overflows): :math:`\sigma(a) = 1/(1+e)` for
    :math:`a \ge 0`, :math:`e/(1+e)` for :math:`a < 0` (no cancellation in either tail), and
    :math:`\sigma(a)\sigma(-a) = e/(1+e)^2`."""
    n = arguments.shape[0]
    minus_abs = scratch[:n]
    for i in range(n):
        minus_abs[i] = -abs(arguments[i])
    exp_of(minus_abs, slope, bits)
    for i in range(n):
        e = slope[i]
        inverse = 1.0 / (1.0 + e)
        sigmoid[i] = inverse if arguments[i] >= 0.0 else e * inverse
        slope[i] = e * inverse * inverse
