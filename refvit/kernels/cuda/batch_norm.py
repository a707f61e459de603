"""Batch norm on the GPU (channels-last: the input is seen as ``(rows, C)``).

* ``_statistics_kernel``: one thread per channel walks down the rows (a gather: neighbouring
  threads read neighbouring channels, no atomics). Training: batch mean and biased variance in
  float64, and the running statistics updated in place; evaluation: the running statistics.
* ``_normalise_kernel`` and ``_backward_x_kernel``: one thread per element.
* ``_gradient_sums_kernel``: one thread per channel, ``sum_r g`` and ``sum_r g * x_hat``.
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._device import as_rows as _rows, param_or_constant as _or_constant
from refvit.kernels.cuda._norm import gradient_sums, mean_var


@cuda.jit
def _statistics_kernel(x, training, has_running, running_mean, running_var, momentum, eps, mean, rstd):
    rows, channels = x.shape
    c = cuda.grid(1)
    if c < channels:
        if training:
            mu, var = mean_var(x.T, c)
            if has_running:
                running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mu
                running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var * rows / (rows - 1.0)
        else:
            mu = running_mean[c] + 0.0
            var = running_var[c] + 0.0
        mean[c] = mu
        rstd[c] = 1.0 / math.sqrt(var + eps)


@cuda.jit
def _normalise_kernel(x, mean, rstd, weight, bias, y):
    rows, channels = x.shape
    index = cuda.grid(1)
    if index < rows * channels:
        row = index // channels
        c = index - row * channels
        y[row, c] = (x[row, c] - mean[c]) * rstd[c] * weight[c] + bias[c]


def forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """-> ``(y, mean, rstd)`` with float64 ``(C,)`` device statistics; running statistics updated in place."""
    on_device = any_device(x, weight, bias)
    channels = tuple(x.shape)[-1]
    host_running = [s for s in (running_mean, running_var) if isinstance(s, np.ndarray)]
    x, d_running_mean, d_running_var = to_device(x, running_mean, running_var)
    has_running = d_running_mean is not None
    x2 = _rows(x)
    mean = empty((channels,), np.float64)
    rstd = empty((channels,), np.float64)
    if not has_running:
        d_running_mean = d_running_var = mean  # never read or written
    _statistics_kernel[grid_1d(channels)](x2, training, has_running, d_running_mean, d_running_var, momentum, eps,
                                          mean, rstd)
    if training and host_running:
        running_mean[...] = d_running_mean.copy_to_host()
        running_var[...] = d_running_var.copy_to_host()
    y = empty(x.shape, x.dtype)
    _normalise_kernel[grid_1d(x.size)](x2, mean, rstd, _or_constant(weight, channels, x.dtype, 1.0),
                                       _or_constant(bias, channels, x.dtype, 0.0), _rows(y))
    return to_host_unless(on_device, y), mean, rstd


@cuda.jit
def _gradient_sums_kernel(dout, x, mean, rstd, sum_g, sum_g_xhat):
    c = cuda.grid(1)
    if c < x.shape[1]:
        sum_g[c], sum_g_xhat[c] = gradient_sums(dout, x, c, mean, rstd, False)


@cuda.jit
def _backward_x_kernel(dout, x, mean, rstd, weight, sum_g, sum_g_xhat, training, dx):
    rows, channels = x.shape
    index = cuda.grid(1)
    if index < rows * channels:
        row = index // channels
        c = index - row * channels
        scale = weight[c] * rstd[c]
        if training:
            x_hat = (x[row, c] - mean[c]) * rstd[c]
            dx[row, c] = scale * (dout[row, c] - sum_g[c] / rows - x_hat * sum_g_xhat[c] / rows)
        else:
            dx[row, c] = scale * dout[row, c]


def backward(dout, x, mean, rstd, weight, training):
    """-> ``(dx, dweight, dbias)``, device arrays iff any input was one."""
    on_device = any_device(dout, x, weight)
    channels = tuple(x.shape)[-1]
    dout, x = to_device(dout, x)
    x2, dout2 = _rows(x), _rows(dout)
    dbias = empty((channels,), x.dtype)
    dweight = empty((channels,), x.dtype)
    _gradient_sums_kernel[grid_1d(channels)](dout2, x2, mean, rstd, dbias, dweight)
    dx = empty(x.shape, x.dtype)
    _backward_x_kernel[grid_1d(x.size)](dout2, x2, mean, rstd, _or_constant(weight, channels, x.dtype, 1.0),
                                        dbias, dweight, training, _rows(dx))
    return to_host_unless(on_device, dx, dweight, dbias)
