"""Softmax on the CPU: one ``prange`` iteration per row (or block of rows).

The array is seen as ``(outer, length, inner)`` (C order) and the rows are ``[o, :, i]``, so a
softmax along any axis runs without a transpose. Each row makes three passes: its maximum, the
shifted exponentials (stored in the output, summed in float64), then the scaling by the sum.

float32 along the last axis (contiguous rows, the attention case) takes :func:`_forward_rows`
instead: the row goes to a float64 buffer and :func:`refvit.kernels.cpu.vector_math.exp_shifted_for_float32`
exponentiates it, shifted by its maximum, in one loop that vectorises (a ``math.exp`` call per
element does not); the result is rounded to float32 once. float64 keeps libm's ``exp``.
"""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.vector_math import exp_shifted_for_float32

ROWS_PER_TASK = 64


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


@njit(cache=True, parallel=True, error_model="numpy")
def _forward_rows(x, y):
    """``x, y (rows, length)`` float32, softmax of each row; blocks of :data:`ROWS_PER_TASK` rows per task."""
    rows, length = x.shape
    for task in prange((rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        exps = np.empty(length)
        powers = np.empty(length)
        for row in range(task * ROWS_PER_TASK, min(rows, (task + 1) * ROWS_PER_TASK)):
            source = x[row]
            row_max = -np.inf
            for k in range(length):
                row_max = max(row_max, source[k])
            for k in range(length):
                exps[k] = source[k]
            exp_shifted_for_float32(exps, row_max, powers)
            total = 0.0
            for k in range(length):
                total += exps[k]
            scale = 1.0 / total
            target = y[row]
            for k in range(length):
                target[k] = exps[k] * scale


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


def forward(x, outer, length, inner):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    if inner == 1 and x.dtype == np.float32 and length > 0:
        _forward_rows(x.reshape(outer, length), y.reshape(outer, length))
    else:
        _forward(x.reshape(outer, length, inner), y.reshape(outer, length, inner))
    return y


def backward(dout, y, outer, length, inner):
    y = np.ascontiguousarray(y)
    dx = np.empty_like(y)
    shape = (outer, length, inner)
    _backward(np.ascontiguousarray(dout).reshape(shape), y.reshape(shape), dx.reshape(shape))
    return dx
