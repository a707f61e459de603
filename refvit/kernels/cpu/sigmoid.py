"""Sigmoid on the CPU: one parallel pass over the flattened array, forward and backward.

The forward uses the two-branch form with ``e = exp(-|x|)``, which never overflows
(:func:`refvit.kernels.cpu.vector_math.stable_sigmoid`).
"""
from numba import njit, prange

from refvit.kernels.cpu._flat import map_flat
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


def forward(x):
    return map_flat(_forward, x)


def backward(dout, out):
    return map_flat(_backward, dout, out)
