"""ReLU on the GPU: one thread per element, forward and backward."""
from numba import cuda

from refvit.kernels.cuda._device import elementwise


@cuda.jit
def _forward_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        out[i] = 0.0 if v < 0.0 else v  # NaN compares False and passes through


def forward(x):
    return elementwise(_forward_kernel, (x,))


@cuda.jit
def _backward_kernel(dout, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = 0.0 if x[i] <= 0.0 else dout[i]


def backward(dout, x):
    return elementwise(_backward_kernel, (dout, x))
