"""GELU on the GPU: one thread per element."""
import math

from numba import cuda

from refvit.kernels.cuda._device import elementwise

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


@cuda.jit
def _forward_kernel(x, out, tanh_approx):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        if tanh_approx:
            out[i] = 0.5 * v * (1.0 + math.tanh(_C * (v + _A * v * v * v)))
        else:
            out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))


def forward(x, tanh_approx):
    return elementwise(_forward_kernel, (x,), tanh_approx)


@cuda.jit
def _backward_kernel(dout, x, dx, tanh_approx):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        if tanh_approx:
            t = math.tanh(_C * (v + _A * v * v * v))
            dx[i] = dout[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _C * (1.0 + 3.0 * _A * v * v))
        else:
            dx[i] = dout[i] * (0.5 * (1.0 + math.erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))


def backward(dout, x, tanh_approx):
    return elementwise(_backward_kernel, (dout, x), tanh_approx)
