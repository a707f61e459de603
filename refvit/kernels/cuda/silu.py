"""SiLU on the GPU: one thread per element, forward and backward."""
from numba import cuda

from refvit.kernels.cuda._device import elementwise
from refvit.kernels.cuda.sigmoid import stable_sigmoid


@cuda.jit
def _forward_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        out[i] = v * stable_sigmoid(v)


def forward(x):
    return elementwise(_forward_kernel, (x,))


@cuda.jit
def _backward_kernel(dout, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        s = stable_sigmoid(v)
        dx[i] = dout[i] * s * (1.0 + v * (1.0 - s))


def backward(dout, x):
    return elementwise(_backward_kernel, (dout, x))
