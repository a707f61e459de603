r"""The functions the ``cpu`` kernels approximate, in loops that vectorise: ``exp`` and ``erfcx``; and
the scalar sigmoid.

A loop that calls ``math.exp`` or ``math.erf`` per element calls libm per element and never
vectorises. The loops below use only ``+ - * /``, ``floor``, comparisons, selects and integer
shifts, so LLVM turns each into SIMD code. Every kernel that exponentiates a row (attention,
stripe attention, ``na2d``, softmax) calls :func:`exp_shifted`. The one exception is GELU's float32
loop (:mod:`refvit.kernels.cpu.gelu`), which writes ``exp`` and ``erfcx`` out inline in float32 with
this module's constants, so that the whole element computation stays in 8-lane float32 code.

**exp** (:func:`exp_shifted`, float32 and float64, in the array's dtype).
:math:`e^y = 2^k e^r` with :math:`k = \lfloor y \log_2 e + \tfrac12 \rfloor` and
:math:`r = y - k \ln 2`, :math:`|r| \le \tfrac12 \ln 2`, where :math:`\ln 2` is split in a high part
with few significant bits (so :math:`k \cdot` it is exact) and a low part. :math:`e^r` is its Taylor
polynomial, degree 13 in float64 (truncation below :math:`4 \cdot 10^{-18}` relative) and 7 in
float32 (below :math:`6 \cdot 10^{-9}`), both under half an ulp. Kernels that compute a float32
result in float64 (softmax rows, ``na2d`` dense) call :func:`exp_shifted_for_float32`: the same
code with the float64 constants and a polynomial of degree 9 (below :math:`10^{-11}` relative), a
quarter cheaper. :math:`2^k` is built from bits: ``k + bias`` (exponent bias 1023 or 127) shifted
left by the mantissa width (52 or 23) in an integer of the dtype's width, read as a float. Between
the two ends below :math:`k` runs from -1022 to 1023 (-126 to 127), so :math:`2^k` is a normal
number and no branch is needed. Within two ulps of the correctly rounded ``exp``
(``tests/kernels/cpu/test_vector_math.py``). The one rule at the ends, for both dtypes:

* ``y < EXP_LOWEST`` (the logarithm of the smallest normal number) gives 0: no subnormal results;
* ``y >= EXP_HIGHEST`` (:math:`1023.5 \ln 2` in float64, :math:`127.5 \ln 2` in float32) gives
  ``inf``: results above :math:`2^{1023.5}` (:math:`2^{127.5}`) overflow, a factor :math:`\sqrt 2`
  before the largest finite number (kernels exponentiate arguments at most 0, far from either end);
* ``-inf`` gives 0, ``inf`` gives ``inf``, NaN stays NaN.

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

**sigmoid.** :func:`stable_sigmoid` is the scalar two-branch form (libm ``exp``, never overflows).

Every block loop reads some arrays and writes others (an element may be read and rewritten in
place): LLVM vectorises a loop only after a run-time check that its arrays do not overlap, and falls
back to scalar code when they do, hence "must not overlap" below. The block helpers are compiled
with ``error_model="numpy"``: a float division by zero gives inf instead of raising, which would need
a branch per element.

Numba's on-disk cache of a kernel is keyed on its own file only; :mod:`refvit.kernels.cpu._stale_cache`
drops the cached kernels that import this module when it changes, so they are compiled afresh.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numba.core import types
from numba.extending import overload

# float64: the logarithms of the smallest normal and of the largest finite number
EXP_LOWEST = math.log(np.finfo(np.float64).tiny)        # -708.396..., whose exp is the smallest normal
EXP_HIGHEST = 1023.5 * math.log(2.0)                    # 709.436...: 2**1023.5, sqrt(2) below the largest float
LOG2_E = 1.4426950408889634
LN2_HIGH = 6.93147180369123816490e-01  # ln 2 to 32 significant bits: k * LN2_HIGH is exact for |k| < 2**20
LN2_LOW = 1.90821492927058770002e-10   # ln 2 - LN2_HIGH
EXP_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(13, -1, -1))  # 1/13!, ..., 1/1!, 1/0!
# float64 results rounded to float32: degree 9, (ln 2 / 2)**10 / 10! e**(ln 2 / 2) < 1e-11 relative
EXP_TAYLOR_FOR_FLOAT32 = tuple(1.0 / math.factorial(n) for n in range(9, -1, -1))

# float32: the same constants in single precision
EXP_LOWEST_F32 = np.float32(-87.336540)  # the least float32 whose exp is normal (the logarithm rounds below)
EXP_HIGHEST_F32 = np.float32(127.5 * math.log(2.0))                # 88.376...: 2**127.5
LOG2_E_F32 = np.float32(LOG2_E)
LN2_HIGH_F32 = np.float32(0.693359375)  # 355 / 512: k * LN2_HIGH_F32 is exact for |k| < 2**15
LN2_LOW_F32 = np.float32(math.log(2.0) - 0.693359375)
EXP_TAYLOR_F32 = tuple(np.float32(1.0 / math.factorial(n)) for n in range(7, -1, -1))  # 1/7!, ..., 1/0!

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


class _ExpConstants(NamedTuple):
    """The constants of :func:`exp_shifted` for one dtype: its ends, the range reduction, the Taylor
    coefficients (highest power first), and how :math:`2^k` is built (exponent bias, mantissa width
    and the integer type of the dtype's width)."""
    lowest: float
    highest: float
    log2_e: float
    ln2_high: float
    ln2_low: float
    taylor: tuple
    exponent_bias: int
    mantissa_bits: int
    bits_type: type


_EXP = {
    "float64": _ExpConstants(EXP_LOWEST, EXP_HIGHEST, LOG2_E, LN2_HIGH, LN2_LOW, EXP_TAYLOR, 1023, 52, np.int64),
    "float32": _ExpConstants(EXP_LOWEST_F32, EXP_HIGHEST_F32, LOG2_E_F32, LN2_HIGH_F32, LN2_LOW_F32, EXP_TAYLOR_F32,
                             127, 23, np.int32),
}
_EXP_FOR_FLOAT32 = _EXP["float64"]._replace(taylor=EXP_TAYLOR_FOR_FLOAT32)


def exp_shifted(x, shift, powers):
    r"""In place ``x[j] = exp(x[j] - shift)`` (``shift`` a number) or ``exp(x[j] - shift[j])`` (an
    array like ``x``), for a 1-D float32 or float64 ``x``, in its dtype; ``powers`` is scratch of
    ``x``'s dtype and at least its length, not overlapping it. See the module docstring for the
    method, the accuracy and the rule at the ends.

    Compiled code only (kernels call it from ``@njit`` functions); this Python body states the same
    result with NumPy."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = x - np.asarray(shift, x.dtype)
        lowest, highest = (EXP_LOWEST, EXP_HIGHEST) if x.dtype == np.float64 else (EXP_LOWEST_F32, EXP_HIGHEST_F32)
        x[:] = np.where(y < lowest, 0.0, np.where(y >= highest, np.inf, np.exp(y)))


def exp_shifted_for_float32(x, shift, powers):
    """:func:`exp_shifted` for a float64 ``x`` whose results are rounded to float32 afterwards: the same
    method and ends, with a Taylor polynomial of degree 9 (relative error below ``1e-11``, a ten
    thousandth of a float32 ulp), which costs a quarter less than the full float64 one.

    Compiled code only; this Python body states the result with NumPy (as :func:`exp_shifted`)."""
    exp_shifted(x, shift, powers)


def _exp_implementation(c, x, shift):
    """The compiled body of :func:`exp_shifted` for the constants ``c`` and the argument types."""
    dtype = np.float32 if x.dtype == types.float32 else np.float64
    lowest, highest, log2_e, ln2_high, ln2_low = (dtype(value) for value in c[:5])
    mantissa_bits, bits_type = c.mantissa_bits, c.bits_type
    taylor = c.taylor
    exponent_bias = bits_type(c.exponent_bias)
    zero, half, infinity = dtype(0.0), dtype(0.5), dtype(np.inf)
    row_shift = isinstance(shift, types.Array)

    def exp_in_place(x, shift, powers):
        bits = powers.view(bits_type)
        scalar_shift = dtype(0.0) if row_shift else dtype(shift)
        for j in range(x.shape[0]):
            y = x[j] - (dtype(shift[j]) if row_shift else scalar_shift)
            clamped = y if y > lowest else lowest  # also NaN -> lowest: k stays a small integer
            clamped = clamped if clamped < highest else highest
            k = np.floor(clamped * log2_e + half)
            r = (clamped - k * ln2_high) - k * ln2_low
            series = zero
            for coefficient in taylor:
                series = series * r + coefficient
            series = series if y < highest else infinity
            x[j] = series if y >= lowest else (zero if y < lowest else y)  # NaN stays NaN
            bits[j] = (bits_type(k) + exponent_bias) << mantissa_bits
        for j in range(x.shape[0]):
            x[j] *= powers[j]
    return exp_in_place


@overload(exp_shifted, jit_options={"cache": True})
def _exp_shifted_for_types(x, shift, powers):
    return _exp_implementation(_EXP[str(x.dtype)], x, shift)


@overload(exp_shifted_for_float32, jit_options={"cache": True})
def _exp_shifted_for_float32_results(x, shift, powers):
    if x.dtype != types.float64:
        raise TypeError(f"exp_shifted_for_float32: 'x' must be float64; got {x.dtype}")
    return _exp_implementation(_EXP_FOR_FLOAT32, x, shift)


@njit(cache=True)
def exp_of(x, shift, powers):
    """:func:`exp_shifted` as a compiled function that Python code can call (tests, tools)."""
    exp_shifted(x, shift, powers)


@njit(cache=True)
def exp_for_float32_of(x, shift, powers):
    """:func:`exp_shifted_for_float32` as a compiled function that Python code can call."""
    exp_shifted_for_float32(x, shift, powers)


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


@njit(cache=True)
def stable_sigmoid(v):
    """sigma(v) for one scalar: ``1 / (1 + e)`` for v >= 0, ``e / (1 + e)`` otherwise, ``e = exp(-|v|)``
    (never overflows; NaN stays NaN)."""
    e = math.exp(-abs(v))
    if v >= 0.0:
        return 1.0 / (1.0 + e)
    return e / (1.0 + e)
