"""Tanh on the GPU: one thread per element, forward and backward."""
import math

from numba import cuda

from refvit.kernels.cuda._device import elementwise, map2_kernel, map_kernel


@cuda.jit(device=True)
def _tanh(v):
    return math.tanh(v)


@cuda.jit(device=True)
def _tanh_grad(g, y):
    return g * (1.0 - y * y)


# one thread per element: forward x -> out, backward (dout, out) -> dx
_forward_kernel, _backward_kernel = map_kernel(_tanh), map2_kernel(_tanh_grad)


def forward(x):
    return elementwise(_forward_kernel, (x,))


def backward(dout, out):
    return elementwise(_backward_kernel, (dout, out))
