"""Sigmoid on the GPU: one thread per element, forward and backward.

The forward uses the two-branch form with ``e = exp(-|x|)``, which never overflows.
"""
import math

from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit(device=True)
def stable_sigmoid(v):
    """sigma(v) for one scalar: ``1 / (1 + e)`` for v >= 0, ``e / (1 + e)`` otherwise (NaN stays NaN)."""
    e = math.exp(-abs(v))
    if v >= 0.0:
        return 1.0 / (1.0 + e)
    return e / (1.0 + e)


@cuda.jit
def _forward_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = stable_sigmoid(x[i])


def forward(x):
    on_device = any_device(x)
    shape = x.shape  # taken before to_device, which turns a 0-d array into shape (1,)
    (x,) = to_device(x)
    out = empty(shape, x.dtype)
    _forward_kernel[grid_1d(x.size)](x.reshape(x.size), out.reshape(out.size))
    return to_host_unless(on_device, out)


@cuda.jit
def _backward_kernel(dout, out, dx):
    i = cuda.grid(1)
    if i < out.size:
        y = out[i]
        dx[i] = dout[i] * y * (1.0 - y)


def backward(dout, out):
    on_device = any_device(dout, out)
    shape = out.shape
    dout, out = to_device(dout, out)
    dx = empty(shape, out.dtype)
    _backward_kernel[grid_1d(out.size)](dout.reshape(dout.size), out.reshape(out.size), dx.reshape(dx.size))
    return to_host_unless(on_device, dx)
