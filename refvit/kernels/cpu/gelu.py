r"""GELU on the CPU, forward and backward, exact (erf) or with the tanh approximation.

**float32** (the training dtype): one loop over the elements per chunk of :data:`CHUNK` elements
(one ``prange`` iteration each), in float32 arithmetic, with no temporary arrays: each element is
read once and its result written once. The loops vectorise (8 float32 lanes): ``exp`` and ``erfc``
are written out inline, with the constants of :mod:`refvit.kernels.cpu.vector_math` in single
precision, ``2^k`` built from its bits (:func:`_float32_from_bits`), and no libm call.

* exact: :math:`g = e^{-x^2/2}` with :math:`x^2` split exactly into ``hi + lo`` (an ``fma``) so that
  its rounding does not reach :math:`g`; :math:`\Phi(x) = g\,\operatorname{erfcx}(|x|/\sqrt2)/2` for
  :math:`x < 0` and one minus it otherwise (the fitted :math:`\operatorname{erfcx}` of
  ``vector_math``); forward :math:`y = x\Phi(x)`, backward
  :math:`\partial L/\partial x = \partial L/\partial y\,(\Phi(x) + x g/\sqrt{2\pi})`.
* tanh: :math:`\tfrac12(1 + \tanh u) = \sigma(2u)` and :math:`1 - \tanh^2 u = 4\sigma(2u)\sigma(-2u)`,
  :math:`u = c(x + 0.044715 x^3)`, from :math:`e = e^{-|2u|}` (``2u`` and the range reduction of its
  exponential in float64: an ulp of ``|2u|`` near 87 would be :math:`8\cdot10^{-6}` of the result):
  forward :math:`y = x\sigma(2u)`, backward
  :math:`\partial L/\partial y\,(\sigma(2u) + 2x\,\sigma(2u)\sigma(-2u)\,c\,(1 + 3\cdot0.044715 x^2))`.

Accuracy against the float64 formulas (``x * ndtr(x)``, ``x * expit(2u)``), measured over
:math:`[-20, 20]`, subnormal and huge inputs (``tests/kernels/cpu/test_gelu.py``): forward within
6 float32 ulps (exact) and 3 (tanh); backward within 8 ulps, except near the zero of the derivative
(:math:`x \approx -0.75`), where its two terms cancel and the error stays below :math:`4\cdot10^{-7}` of
their magnitudes. Results under :math:`10^{-35}` in magnitude (the far left tail, where the
exponential falls below the least normal float32) may come out as 0. The op contract allows a
relative ``2e-4``. ``+-inf`` and NaN give what the NumPy reference gives (NaN at ``-inf``, from
``-inf * 0``).

Measured on one thread (float32, exact form, forward+backward, least of 40 calls, three runs):
0.58-0.60 ms at ``(64, 4, 4, 256)`` and 1.12-1.15 ms at ``(64, 16, 16, 32)``, against 1.99-2.01 ms and
5.8-7.2 ms for the former float64 block loops (PyTorch with autograd: 0.56-0.58 ms and 0.72-0.89 ms).
See ``docs/backends.md``.

**float64**: one ``prange`` loop over the elements with ``math.erf``/``math.exp``/``math.tanh``
(libm), so float64 results stay at rounding level.

:func:`gelu_stretch` is the code of both paths for one contiguous stretch, for kernels that apply GELU in a
loop of their own (``linear_gelu``): it gives the bits of this module's entries.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic, overload

from refvit.kernels.cpu.vector_math import (ERFCX_COEFFICIENTS, ERFCX_T_SCALE, EXP_LOWEST_F32, EXP_TAYLOR_F32,
                                            LN2_HIGH, LN2_HIGH_F32, LN2_LOW, LN2_LOW_F32, LOG2_E, LOG2_E_F32)

CHUNK = 1 << 15  # elements per prange iteration

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_C = math.sqrt(2.0 / math.pi)
_A = 0.044715
# float32 constants of the float32 path (a float64 literal would turn its arithmetic into float64)
_Q0, _Q1, _Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8, _Q9, _Q10, _Q11, _Q12 = (np.float32(q) for q in ERFCX_COEFFICIENTS)
_E7, _E6, _E5, _E4, _E3, _E2, _E1, _E0 = EXP_TAYLOR_F32  # 1/7!, ..., 1/0!
_ZERO, _HALF, _ONE = np.float32(0.0), np.float32(0.5), np.float32(1.0)
_ROUNDER = np.float32(1.5 * 2**23)  # x + _ROUNDER - _ROUNDER rounds |x| < 2**22 to an integer
_ROUNDER_F64 = 1.5 * 2**52
_EXP_LOWEST_F64 = float(EXP_LOWEST_F32)
_T_SCALE = np.float32(ERFCX_T_SCALE)
_SQRT_HALF_F32, _INV_SQRT_2PI_F32, _A_F32 = np.float32(_SQRT_HALF), np.float32(_INV_SQRT_2PI), np.float32(_A)
_TWO_C, _THREE_A, _CLIP = np.float32(2.0 * _C), np.float32(3.0 * _A), np.float32(1e4)


@njit(cache=True, inline="always")
def _gelu_libm(v, tanh_approx):
    """GELU of one float64 value (libm's ``tanh``/``erf``)."""
    if tanh_approx:
        return 0.5 * v * (1.0 + math.tanh(_C * (v + _A * v * v * v)))
    return 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))


@njit(cache=True, inline="always")
def _gelu_slope_libm(v, tanh_approx):
    """The derivative of GELU at one float64 value (libm's ``tanh``/``erf``/``exp``)."""
    if tanh_approx:
        t = math.tanh(_C * (v + _A * v * v * v))
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _C * (1.0 + 3.0 * _A * v * v)
    return 0.5 * (1.0 + math.erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)


@njit(cache=True, parallel=True)
def _forward_libm(x, out, tanh_approx):
    for i in prange(x.size):
        out[i] = _gelu_libm(x[i], tanh_approx)


@njit(cache=True, parallel=True)
def _backward_libm(dout, x, dx, tanh_approx):
    for i in prange(x.size):
        dx[i] = dout[i] * _gelu_slope_libm(x[i], tanh_approx)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (a register move, vectorisable)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _fma32(typingctx, a, b, c):
    """``a * b + c`` for float32 values with one rounding (LLVM's ``fma``, vectorisable)."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        function = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(function, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _gaussian(v):
    """``exp(-v^2/2)`` in float32: ``v^2 = hi + lo`` exactly (``lo`` from an ``fma``), ``exp(-hi/2)`` by
    :func:`_exp` and ``exp(-lo/2)`` as ``1 - lo/2``, so the rounding of ``v^2`` (up to ``6e-6`` relative
    in the result where ``v^2/2`` nears 87) does not reach it."""
    clipped = min(max(v, -_CLIP), _CLIP)  # no overflow of v^2 (the result is 0 from |v| = 14 on)
    hi = clipped * clipped
    lo = _fma32(clipped, clipped, -hi)
    return _exp(-_HALF * hi) * (_ONE - _HALF * lo)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_reduced(a, lowest, k, r):
    """``e^a = e^r 2^k`` in float32 from the range reduction ``a = k ln 2 + r`` (``|r| <= ln2/2``, float32):
    the Taylor polynomial of :func:`~refvit.kernels.cpu.vector_math.exp_shifted`'s float32 constants and
    ``2^k`` built from its bits. Below ``lowest`` it is 0, and a NaN stays NaN."""
    s = _E0 + r * (_E1 + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * (_E6 + r * _E7))))))
    s = s * _float32_from_bits(np.int32((np.int32(k) + 127) << 23))
    return s if a >= lowest else (_ZERO if a < lowest else np.float32(a))


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp(a):
    """``e^a`` in float32 for a float32 ``a <= 0`` (or NaN), the reduction in float32 with the nearest
    integer ``k`` found by adding and subtracting :data:`_ROUNDER`."""
    clamped = a if a > EXP_LOWEST_F32 else EXP_LOWEST_F32  # also NaN -> the clamp: k stays a small integer
    k = (clamped * LOG2_E_F32 + _ROUNDER) - _ROUNDER
    return _exp_reduced(a, EXP_LOWEST_F32, k, (clamped - k * LN2_HIGH_F32) - k * LN2_LOW_F32)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_of_float64(a):
    """``e^a`` in float32 for a float64 ``a <= 0`` (or NaN) whose float32 rounding would cost accuracy
    (``|a|`` up to 87: an ulp of ``a`` is ``8e-6`` relative in ``e^a``): the reduction in float64, the
    rest in float32."""
    clamped = a if a > _EXP_LOWEST_F64 else _EXP_LOWEST_F64
    k = (clamped * LOG2_E + _ROUNDER_F64) - _ROUNDER_F64
    return _exp_reduced(a, _EXP_LOWEST_F64, k, np.float32((clamped - k * LN2_HIGH) - k * LN2_LOW))


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _half_erfcx(v):
    """``erfcx(z) / 2`` for ``z = |v|/sqrt 2`` (float32, the polynomial of
    :func:`~refvit.kernels.cpu.vector_math.erfcx_of`); ``erfc(z)/2`` is ``e^{-z^2}`` times it."""
    t = _ONE / (_ONE + _T_SCALE * (abs(v) * _SQRT_HALF_F32))
    return _HALF * t * (_Q0 + t * (_Q1 + t * (_Q2 + t * (_Q3 + t * (_Q4 + t * (_Q5 + t * (_Q6 + t * (
        _Q7 + t * (_Q8 + t * (_Q9 + t * (_Q10 + t * (_Q11 + t * _Q12))))))))))))


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _exact(x, dout, result, gradient):
    """A stretch of the exact form, one loop: ``e = exp(-x^2/2)``, ``Phi(v) = e erfcx/2`` for ``v < 0``
    and one minus it otherwise (``dout`` is not read in the forward). ``v erfcx/2`` is formed before
    the product with ``e``, which keeps the forward's left tail out of the subnormal range down to
    ``v = -13``; ``v`` is clipped there to ``+-10^4`` (``e`` is 0 beyond), so that ``inf * 0`` gives NaN
    only where the reference gives it."""
    if gradient:
        for i in range(x.shape[0]):
            v = x[i]
            e = _gaussian(v)
            half_erfc = e * _half_erfcx(v)
            first = _ONE - half_erfc if v >= _ZERO else half_erfc
            result[i] = dout[i] * (first + v * e * _INV_SQRT_2PI_F32)
    else:
        for i in range(x.shape[0]):
            v = x[i]
            clipped = min(max(v, -_CLIP), _CLIP)
            e = _gaussian(v)
            tail = (clipped * _half_erfcx(v)) * e
            result[i] = v - tail if v >= _ZERO else (tail if v == clipped else v * e)  # -inf * 0: NaN


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _tanh(x, dout, result, gradient):
    """A stretch of the tanh form, one loop: ``e = exp(-|2u|)``, ``sigma(2u) = 1/(1+e)`` for ``x >= 0``
    (``2u`` has the sign of ``x``) and ``e/(1+e)`` below, ``sigma(2u) sigma(-2u) = e/(1+e)^2``. ``u`` and
    the cubic's slope use ``x`` clipped to ``+-10^4`` (no overflow; ``e`` is 0 from ``|x| > 10`` on either way)."""
    for i in range(x.shape[0]):
        v = x[i]
        clipped = min(max(v, -_CLIP), _CLIP)
        wide = np.float64(clipped)
        e = _exp_of_float64(-abs((2.0 * _C) * (wide + _A * wide * wide * wide)))
        inverse = _ONE / (_ONE + e)
        first = inverse if v >= _ZERO else e * inverse
        if gradient:
            result[i] = dout[i] * (first + (v * (e * inverse * inverse)) * _TWO_C * (_ONE + _THREE_A * clipped * clipped))
        else:
            result[i] = v * first


def gelu_stretch(x, dout, result, tanh_approx, gradient):
    """GELU of a stretch of contiguous elements on one thread, the code of this module's kernels for the
    dtype of ``x``: ``result = gelu(x)``, or with ``gradient`` ``result = dout * gelu'(x)`` (``dout`` is
    not read in the forward). For compiled callers that apply GELU inside a loop of their own
    (:mod:`refvit.kernels.cpu.linear_gelu`), with the same results as this module's entries.

    Compiled code only; this Python body states the result with the entries."""
    result[:] = backward(dout, x, tanh_approx) if gradient else forward(x, tanh_approx)


@overload(gelu_stretch, jit_options={"cache": True})
def _gelu_stretch_for_types(x, dout, result, tanh_approx, gradient):
    if x.dtype == types.float32:
        def float32_stretch(x, dout, result, tanh_approx, gradient):
            if tanh_approx:
                _tanh(x, dout, result, gradient)
            else:
                _exact(x, dout, result, gradient)
        return float32_stretch

    def float64_stretch(x, dout, result, tanh_approx, gradient):
        if gradient:
            for i in range(x.shape[0]):
                result[i] = dout[i] * _gelu_slope_libm(x[i], tanh_approx)
        else:
            for i in range(x.shape[0]):
                result[i] = _gelu_libm(x[i], tanh_approx)
    return float64_stretch


@njit(cache=True, parallel=True)
def _blocks(x, dout, result, tanh_approx, gradient):
    """float32, chunk by chunk (one ``prange`` iteration each): ``result = x * first`` (forward), or with
    ``gradient`` the input gradient from ``dout`` (``dout`` is not read in the forward)."""
    size = x.size
    for chunk in prange((size + CHUNK - 1) // CHUNK):
        start, stop = chunk * CHUNK, min(size, (chunk + 1) * CHUNK)
        upstream = dout[start:stop] if gradient else dout[:0]
        if tanh_approx:
            _tanh(x[start:stop], upstream, result[start:stop], gradient)
        else:
            _exact(x[start:stop], upstream, result[start:stop], gradient)


def forward(x, tanh_approx):
    x = np.asarray(x, order="C")
    out = np.empty_like(x)
    if x.dtype == np.float32:
        _blocks(x.reshape(-1), x.reshape(-1), out.reshape(-1), tanh_approx, False)
    else:
        _forward_libm(x.reshape(-1), out.reshape(-1), tanh_approx)
    return out


def backward(dout, x, tanh_approx):
    x = np.asarray(x, order="C")
    dx = np.empty_like(x)
    dout = np.asarray(dout, order="C").reshape(-1)
    if x.dtype == np.float32:
        _blocks(x.reshape(-1), dout, dx.reshape(-1), tanh_approx, True)
    else:
        _backward_libm(dout, x.reshape(-1), dx.reshape(-1), tanh_approx)
    return dx
