"""Sigmoid on the GPU: one thread per element, forward and backward.

The forward uses the two-branch form with ``e = exp(-|x|)``, which never overflows.
"""
import math

from numba import cuda

from refvit.kernels.cuda._device import elementwise, map2_kernel, map_kernel


@cuda.jit(device=True)
def stable_sigmoid(v):
    """sigma(v) for one scalar: ``1 / (1 + e)`` for v >= 0, ``e / (1 + e)`` otherwise (NaN stays NaN)."""
    e = math.exp(-abs(v))
    if v >= 0.0:
        return 1.0 / (1.0 + e)
    return e / (1.0 + e)


@cuda.jit(device=True)
def _sigmoid_grad(g, y):
    return g * y * (1.0 - y)


# one thread per element: forward x -> out, backward (dout, out) -> dx
_forward_kernel, _backward_kernel = map_kernel(stable_sigmoid), map2_kernel(_sigmoid_grad)


def forward(x):
    return elementwise(_forward_kernel, (x,))


def backward(dout, out):
    return elementwise(_backward_kernel, (dout, out))
