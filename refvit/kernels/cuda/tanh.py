"""Tanh on the GPU: one thread per element, forward and backward."""
import math

from numba import cuda

from refvit.kernels.cuda._device import elementwise


@cuda.jit
def _forward_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = math.tanh(x[i])


def forward(x):
    return elementwise(_forward_kernel, (x,))


@cuda.jit
def _backward_kernel(dout, out, dx):
    i = cuda.grid(1)
    if i < out.size:
        y = out[i]
        dx[i] = dout[i] * (1.0 - y * y)


def backward(dout, out):
    return elementwise(_backward_kernel, (dout, out))
