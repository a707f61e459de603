"""Tanh on the GPU: one thread per element, forward and backward."""
import math

from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit
def _forward_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = math.tanh(x[i])


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
        dx[i] = dout[i] * (1.0 - y * y)


def backward(dout, out):
    on_device = any_device(dout, out)
    shape = out.shape
    dout, out = to_device(dout, out)
    dx = empty(shape, out.dtype)
    _backward_kernel[grid_1d(out.size)](dout.reshape(dout.size), out.reshape(out.size), dx.reshape(dx.size))
    return to_host_unless(on_device, dx)
