"""Sigmoid on the CPU: one parallel pass over the flattened array, forward and backward.

The forward uses the two-branch form with ``e = exp(-|x|)``, which never overflows
(:func:`refvit.kernels.cpu.vector_math.stable_sigmoid`).
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry
from refvit.kernels.cpu.vector_math import stable_sigmoid


@njit(cache=True, parallel=True)
def _forward(x, out):
    for i in prange(x.size):
        out[i] = stable_sigmoid(x[i])


@njit(cache=True, parallel=True)
def _backward(dout, out, dx):
    for i in prange(out.size):
        y = out[i]
        dx[i] = dout[i] * y * (1.0 - y)


@kernel_entry
def forward(x):
    x = np.asarray(x, order="C")
    out = np.empty_like(x)
    _forward(x.reshape(-1), out.reshape(-1))
    return out


@kernel_entry
def backward(dout, out):
    out = np.asarray(out, order="C")
    dx = np.empty_like(out)
    _backward(np.asarray(dout, order="C").reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx
