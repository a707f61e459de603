"""Softmax on the GPU: one thread per row.

The array is seen as ``(outer, length, inner)`` (C order) and thread ``row`` owns ``[o, :, i]``;
for a softmax along a non-last axis neighbouring threads read neighbouring addresses. Each
thread makes three passes over its row: maximum, shifted exponentials (stored in the output and
summed in float64), scaling by the sum.

A row whose maximum is infinite (every logit ``-inf``, or a ``+inf`` logit) is NaN, as in PyTorch
and the NumPy reference, where ``x - max`` is ``inf - inf``. The kernel writes that NaN without
computing ``inf - inf``: under the CUDA simulator the kernel's arithmetic is NumPy scalar arithmetic
in the simulator's own threads, which would warn ("invalid value") outside the caller's
``np.errstate``.
"""
import math

from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit
def _forward_kernel(x, y):
    outer, length, inner = x.shape
    row = cuda.grid(1)
    if row < outer * inner:
        o = row // inner
        i = row - o * inner
        row_max = -math.inf
        for k in range(length):
            row_max = max(row_max, x[o, k, i])
        if math.isinf(row_max):
            for k in range(length):
                y[o, k, i] = math.nan
            return
        total = 0.0
        for k in range(length):
            e = math.exp(x[o, k, i] - row_max)
            y[o, k, i] = e
            total += e
        scale = 1.0 / total
        for k in range(length):
            y[o, k, i] *= scale


def forward(x, outer, length, inner):
    on_device = any_device(x)
    (x,) = to_device(x)
    y = empty(x.shape, x.dtype)
    shape = (outer, length, inner)
    _forward_kernel[grid_1d(outer * inner)](x.reshape(*shape), y.reshape(*shape))
    return to_host_unless(on_device, y)


@cuda.jit
def _backward_kernel(dout, y, dx):
    outer, length, inner = y.shape
    row = cuda.grid(1)
    if row < outer * inner:
        o = row // inner
        i = row - o * inner
        dot = 0.0
        for k in range(length):
            dot += dout[o, k, i] * y[o, k, i]
        for k in range(length):
            dx[o, k, i] = y[o, k, i] * (dout[o, k, i] - dot)


def backward(dout, y, outer, length, inner):
    on_device = any_device(dout, y)
    dout, y = to_device(dout, y)
    dx = empty(y.shape, y.dtype)
    shape = (outer, length, inner)
    _backward_kernel[grid_1d(outer * inner)](dout.reshape(*shape), y.reshape(*shape), dx.reshape(*shape))
    return to_host_unless(on_device, dx)
