"""Tanh on the CPU.

The forward is NumPy's ``np.tanh``: it is vectorised (SIMD) and several times faster than a Numba
loop, which calls the scalar C ``tanh`` per element. The backward, ``dout * (1 - y^2)``, is one
fused parallel pass over the flattened arrays.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._flat import map_flat


@njit(cache=True, parallel=True)
def _backward(dout, out, dx):
    for i in prange(out.size):
        y = out[i]
        dx[i] = dout[i] * (1.0 - y * y)


def forward(x):
    return np.asarray(np.tanh(x), order="C")  # asarray: a 0-d input gives a NumPy scalar


def backward(dout, out):
    return map_flat(_backward, dout, out)
