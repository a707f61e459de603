"""Sigmoid on the GPU: one thread per element, forward and backward.

The forward uses the two-branch form with ``e = exp(-|x|)``, which never overflows.
"""
import math

from numba import cuda

from refvit.kernels.cuda._device import elementwise


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
    return elementwise(_forward_kernel, (x,))


@cuda.jit
def _backward_kernel(dout, out, dx):
    i = cuda.grid(1)
    if i < out.size:
        y = out[i]
        dx[i] = dout[i] * y * (1.0 - y)


def backward(dout, out):
    return elementwise(_backward_kernel, (dout, out))
