"""Softmax on the CPU: one ``prange`` iteration per row.

The array is seen as ``(outer, length, inner)`` (C order) and the rows are ``[o, :, i]``, so a
softmax along any axis runs without a transpose. Each row makes three passes: its maximum, the
shifted exponentials (stored in the output, summed in float64), then the scaling by the sum.
"""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry


@njit(cache=True, parallel=True)
def _forward(x, y):
    outer, length, inner = x.shape
    for row in prange(outer * inner):
        o = row // inner
        i = row - o * inner
        row_max = -np.inf
        for k in range(length):
            row_max = max(row_max, x[o, k, i])
        total = 0.0
        for k in range(length):
            e = math.exp(x[o, k, i] - row_max)
            y[o, k, i] = e
            total += e
        scale = 1.0 / total
        for k in range(length):
            y[o, k, i] *= scale


@njit(cache=True, parallel=True)
def _backward(dout, y, dx):
    outer, length, inner = y.shape
    for row in prange(outer * inner):
        o = row // inner
        i = row - o * inner
        dot = 0.0
        for k in range(length):
            dot += dout[o, k, i] * y[o, k, i]
        for k in range(length):
            dx[o, k, i] = y[o, k, i] * (dout[o, k, i] - dot)


@kernel_entry
def forward(x, outer, length, inner):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _forward(x.reshape(outer, length, inner), y.reshape(outer, length, inner))
    return y


@kernel_entry
def backward(dout, y, outer, length, inner):
    y = np.ascontiguousarray(y)
    dx = np.empty_like(y)
    shape = (outer, length, inner)
    _backward(np.ascontiguousarray(dout).reshape(shape), y.reshape(shape), dx.reshape(shape))
    return dx
