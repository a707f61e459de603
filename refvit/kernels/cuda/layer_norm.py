"""Layer norm on the GPU.

The input is seen as ``(rows, C)``. Forward and ``dx``: one thread per row, statistics in
float64. ``dweight``/``dbias``: one thread per channel walking down all rows (a gather, so no
atomics; neighbouring threads read neighbouring channels of the same row).
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._device import as_rows as _rows, param_or_constant as _affine_or_default
from refvit.kernels.cuda._norm import gradient_sums, mean_var


@cuda.jit
def _forward_kernel(x, weight, bias, eps, y, mean, rstd):
    rows, channels = x.shape
    row = cuda.grid(1)
    if row < rows:
        mu, var = mean_var(x, row)
        r = 1.0 / math.sqrt(var + eps)
        for c in range(channels):
            y[row, c] = (x[row, c] - mu) * r * weight[c] + bias[c]
        mean[row] = mu
        rstd[row] = r


def forward(x, weight, bias, eps):
    """-> ``(y, mean, rstd)``; ``mean``/``rstd`` are float64 device arrays of shape ``(rows,)``."""
    on_device = any_device(x, weight, bias)
    channels = tuple(x.shape)[-1]
    (x,) = to_device(x)
    weight = _affine_or_default(weight, channels, x.dtype, 1.0)
    bias = _affine_or_default(bias, channels, x.dtype, 0.0)
    x2 = _rows(x)
    y = empty(x.shape, x.dtype)
    mean = empty((x2.shape[0],), np.float64)
    rstd = empty((x2.shape[0],), np.float64)
    _forward_kernel[grid_1d(x2.shape[0])](x2, weight, bias, eps, _rows(y), mean, rstd)
    return to_host_unless(on_device, y), mean, rstd


@cuda.jit
def _backward_x_kernel(dout, x, mean, rstd, weight, dx):
    rows, channels = x.shape
    row = cuda.grid(1)
    if row < rows:
        mu = mean[row]
        r = rstd[row]
        sum_g = 0.0
        sum_g_xhat = 0.0
        for c in range(channels):
            g_hat = dout[row, c] * weight[c]
            sum_g += g_hat
            sum_g_xhat += g_hat * (x[row, c] - mu) * r
        mean_g = sum_g / channels
        mean_g_xhat = sum_g_xhat / channels
        for c in range(channels):
            x_hat = (x[row, c] - mu) * r
            dx[row, c] = r * (dout[row, c] * weight[c] - mean_g - x_hat * mean_g_xhat)


@cuda.jit
def _backward_params_kernel(dout, x, mean, rstd, dweight, dbias):
    c = cuda.grid(1)
    if c < x.shape[1]:
        dbias[c], dweight[c] = gradient_sums(dout, x, c, mean, rstd, True)


def backward(dout, x, mean, rstd, weight):
    """-> ``(dx, dweight, dbias)``, device arrays iff any input was one."""
    on_device = any_device(dout, x, weight)
    channels = tuple(x.shape)[-1]
    dout, x = to_device(dout, x)
    weight = _affine_or_default(weight, channels, x.dtype, 1.0)
    x2, dout2 = _rows(x), _rows(dout)
    dx = empty(x.shape, x.dtype)
    _backward_x_kernel[grid_1d(x2.shape[0])](dout2, x2, mean, rstd, weight, _rows(dx))
    dweight = empty((channels,), x.dtype)
    dbias = empty((channels,), x.dtype)
    _backward_params_kernel[grid_1d(channels)](dout2, x2, mean, rstd, dweight, dbias)
    return to_host_unless(on_device, dx, dweight, dbias)
