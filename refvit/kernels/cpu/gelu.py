"""GELU on the CPU: one parallel pass over the flattened array."""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


@njit(cache=True, parallel=True)
def _forward(x, out, tanh_approx):
    for i in prange(x.size):
        v = x[i]
        if tanh_approx:
            out[i] = 0.5 * v * (1.0 + math.tanh(_C * (v + _A * v * v * v)))
        else:
            out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))


@njit(cache=True, parallel=True)
def _backward(dout, x, dx, tanh_approx):
    for i in prange(x.size):
        v = x[i]
        if tanh_approx:
            t = math.tanh(_C * (v + _A * v * v * v))
            dx[i] = dout[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _C * (1.0 + 3.0 * _A * v * v))
        else:
            dx[i] = dout[i] * (0.5 * (1.0 + math.erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))


@kernel_entry
def forward(x, tanh_approx):
    x = np.asarray(x, order="C")
    out = np.empty_like(x)
    _forward(x.reshape(-1), out.reshape(-1), tanh_approx)
    return out


@kernel_entry
def backward(dout, x, tanh_approx):
    x = np.asarray(x, order="C")
    dx = np.empty_like(x)
    _backward(np.asarray(dout, order="C").reshape(-1), x.reshape(-1), dx.reshape(-1), tanh_approx)
    return dx
