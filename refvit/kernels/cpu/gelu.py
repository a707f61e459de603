r"""GELU on the CPU, forward and backward, exact (erf) or with the tanh approximation.

**float32** (the training dtype): the flattened array is cut into chunks of :data:`CHUNK` elements,
one ``prange`` iteration each; a chunk is computed in blocks of :data:`BLOCK` elements by the
helpers of :mod:`refvit.kernels.cpu.vector_math` (no libm call in any loop), in float64
with small scratch arrays, and rounded once to float32 on store.

* exact: :math:`\Phi(x)` and :math:`g = e^{-x^2/2}` from ``normal_cdf_and_gaussian`` (erfc through the
  fitted :math:`\operatorname{erfcx}`, relative error :math:`\le 1.3\cdot10^{-9}`); forward
  :math:`y = x\Phi(x)`, backward :math:`\partial L/\partial x = \partial L/\partial y\,(\Phi(x) + x g/\sqrt{2\pi})`.
* tanh: :math:`\tfrac12(1 + \tanh u) = \sigma(2u)` and :math:`1 - \tanh^2 u = 4\sigma(2u)\sigma(-2u)`,
  :math:`u = c(x + 0.044715 x^3)`, from ``sigmoid_and_slope_of``: forward :math:`y = x\sigma(2u)`,
  backward :math:`\partial L/\partial y\,(\sigma(2u) + 2x\,\sigma(2u)\sigma(-2u)\,c\,(1 + 3\cdot0.044715 x^2))`.

Forward results are within one float32 ulp of the float64 formulas (``x * ndtr(x)``,
``x * expit(2u)``), subnormal ones included; backward ones too, except near the zero of the
derivative (:math:`x \approx -0.75`), where its two terms cancel and the error is at most
:math:`10^{-8}` of their magnitudes. ``+-inf`` and NaN give what the NumPy reference gives
(NaN at ``-inf``, from ``-inf * 0``).

**float64**: one ``prange`` loop over the elements with ``math.erf``/``math.exp``/``math.tanh``
(libm), so float64 results stay at rounding level.
"""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.vector_math import normal_cdf_and_gaussian, sigmoid_and_slope_of

BLOCK = 1024  # float64 scratch rows of 8 KiB: larger blocks spread the per-block call costs
CHUNK = 16 * BLOCK  # elements per prange iteration (one allocation of scratch each)

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


@njit(cache=True, parallel=True)
def _forward_libm(x, out, tanh_approx):
    for i in prange(x.size):
        v = x[i]
        if tanh_approx:
            out[i] = 0.5 * v * (1.0 + math.tanh(_C * (v + _A * v * v * v)))
        else:
            out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))


@njit(cache=True, parallel=True)
def _backward_libm(dout, x, dx, tanh_approx):
    for i in prange(x.size):
        v = x[i]
        if tanh_approx:
            t = math.tanh(_C * (v + _A * v * v * v))
            dx[i] = dout[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _C * (1.0 + 3.0 * _A * v * v))
        else:
            dx[i] = dout[i] * (0.5 * (1.0 + math.erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))


@njit(cache=True)
def _block_factors(x, tanh_approx, first, second, scratch):
    """For ``v = x`` (a float32 block of ``n`` elements): ``first[:n] = Phi(v)`` and ``second[:n] =
    exp(-v^2/2)`` (exact), or ``first[:n] = sigma(2u)`` and ``second[:n] = sigma(2u) sigma(-2u)`` (tanh)."""
    n = x.shape[0]
    if tanh_approx:
        twice_u = scratch[0, :n]
        for i in range(n):
            v = np.float64(x[i])
            twice_u[i] = 2.0 * _C * (v + _A * v * v * v)
        sigmoid_and_slope_of(twice_u, first[:n], second[:n], scratch[1])
    else:
        normal_cdf_and_gaussian(x, first[:n], second[:n], scratch)


@njit(cache=True, parallel=True)
def _blocks(x, dout, result, tanh_approx, gradient):
    """float32, chunk by chunk: ``result = x * first`` (forward), or with ``gradient`` the input
    gradient from ``dout`` (``dout`` is not read in the forward)."""
    size = x.size
    for chunk in prange((size + CHUNK - 1) // CHUNK):
        first, second, scratch = np.empty(BLOCK), np.empty(BLOCK), np.empty((2, BLOCK))
        for start in range(chunk * CHUNK, min(size, (chunk + 1) * CHUNK), BLOCK):
            block = x[start:start + BLOCK]
            target = result[start:start + BLOCK]
            _block_factors(block, tanh_approx, first, second, scratch)
            if not gradient:
                for i in range(block.shape[0]):
                    target[i] = np.float64(block[i]) * first[i]
            elif tanh_approx:
                upstream = dout[start:start + BLOCK]
                for i in range(block.shape[0]):
                    v = np.float64(block[i])
                    target[i] = upstream[i] * (first[i] + v * (2.0 * _C) * second[i] * (1.0 + (3.0 * _A) * v * v))
            else:
                upstream = dout[start:start + BLOCK]
                for i in range(block.shape[0]):
                    v = np.float64(block[i])
                    target[i] = upstream[i] * (first[i] + v * second[i] * _INV_SQRT_2PI)


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
