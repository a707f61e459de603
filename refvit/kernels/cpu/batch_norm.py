"""Batch norm on the CPU (channels-last: the input is seen as ``(rows, C)``).

Per-channel sums over rows are race-free and independent of the thread count: each ``prange``
iteration sums one fixed block of ``ROWS_PER_BLOCK`` rows into its own row of a partial-sums
table, and the blocks are then added per channel in a fixed order (float64 throughout).
Normalising and ``dx`` run one ``prange`` iteration per row. The running statistics, ``C``
numbers, are updated in place at the end of the forward pass.
"""

import numpy as np
from numba import njit, prange


ROWS_PER_BLOCK = 64


@njit(cache=True)
def _add_blocks(partial):
    blocks, channels = partial.shape
    total = np.zeros(channels)
    for block in range(blocks):
        for c in range(channels):
            total[c] += partial[block, c]
    return total


@njit(cache=True, parallel=True)
def _channel_mean_var(x):
    """Per-channel mean and biased variance (two passes: mean, then centred squares)."""
    rows, channels = x.shape
    blocks = (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    partial = np.zeros((blocks, channels))
    for block in prange(blocks):
        for row in range(block * ROWS_PER_BLOCK, min(rows, (block + 1) * ROWS_PER_BLOCK)):
            for c in range(channels):
                partial[block, c] += x[row, c]
    mean = _add_blocks(partial) / rows
    partial[:, :] = 0.0
    for block in prange(blocks):
        for row in range(block * ROWS_PER_BLOCK, min(rows, (block + 1) * ROWS_PER_BLOCK)):
            for c in range(channels):
                d = x[row, c] - mean[c]
                partial[block, c] += d * d
    return mean, _add_blocks(partial) / rows


@njit(cache=True, parallel=True)
def _normalise(x, mean, rstd, weight, bias, y):
    rows, channels = x.shape
    for row in prange(rows):
        for c in range(channels):
            y[row, c] = (x[row, c] - mean[c]) * rstd[c] * weight[c] + bias[c]


@njit(cache=True, parallel=True)
def _gradient_sums(dout, x, mean, rstd):
    """Per-channel ``sum_r g`` and ``sum_r g * x_hat``."""
    rows, channels = x.shape
    blocks = (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    partial_g = np.zeros((blocks, channels))
    partial_g_xhat = np.zeros((blocks, channels))
    for block in prange(blocks):
        for row in range(block * ROWS_PER_BLOCK, min(rows, (block + 1) * ROWS_PER_BLOCK)):
            for c in range(channels):
                partial_g[block, c] += dout[row, c]
                partial_g_xhat[block, c] += dout[row, c] * (x[row, c] - mean[c]) * rstd[c]
    return _add_blocks(partial_g), _add_blocks(partial_g_xhat)


@njit(cache=True, parallel=True)
def _backward_x(dout, x, mean, rstd, weight, sum_g, sum_g_xhat, training, dx):
    rows, channels = x.shape
    for row in prange(rows):
        for c in range(channels):
            scale = weight[c] * rstd[c]
            if training:
                x_hat = (x[row, c] - mean[c]) * rstd[c]
                dx[row, c] = scale * (dout[row, c] - sum_g[c] / rows - x_hat * sum_g_xhat[c] / rows)
            else:
                dx[row, c] = scale * dout[row, c]


def _rows(a):
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


def _or_constant(param, channels, dtype, value):
    return np.full(channels, value, dtype) if param is None else np.ascontiguousarray(param)


def forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """-> ``(y, mean, rstd)`` with float64 ``(C,)`` statistics; running statistics updated in place."""
    channels = x.shape[-1]
    x2 = _rows(x)
    if training:
        mean, var = _channel_mean_var(x2)
        if running_mean is not None:
            n = x2.shape[0]
            running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean
            running_var[...] = (1.0 - momentum) * running_var + momentum * (n / (n - 1)) * var
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    rstd = 1.0 / np.sqrt(var + eps)
    y = np.empty(x.shape, x.dtype)
    _normalise(x2, mean, rstd, _or_constant(weight, channels, x.dtype, 1.0),
               _or_constant(bias, channels, x.dtype, 0.0), y.reshape(x2.shape))
    return y, mean, rstd


def backward(dout, x, mean, rstd, weight, training):
    """-> ``(dx, dweight, dbias)``."""
    channels = x.shape[-1]
    x2, dout2 = _rows(x), _rows(dout)
    sum_g, sum_g_xhat = _gradient_sums(dout2, x2, mean, rstd)
    dx = np.empty(x.shape, x.dtype)
    _backward_x(dout2, x2, mean, rstd, _or_constant(weight, channels, x.dtype, 1.0), sum_g, sum_g_xhat,
                training, dx.reshape(x2.shape))
    return dx, sum_g_xhat.astype(x.dtype), sum_g.astype(x.dtype)
