"""SiLU on the GPU: one thread per element, forward and backward."""
from numba import cuda

from refvit.kernels.cuda._device import elementwise, map2_kernel, map_kernel
from refvit.kernels.cuda.sigmoid import stable_sigmoid


@cuda.jit(device=True)
def _silu(v):
    return v * stable_sigmoid(v)


@cuda.jit(device=True)
def _silu_grad(g, v):
    s = stable_sigmoid(v)
    return g * s * (1.0 + v * (1.0 - s))


# one thread per element: forward x -> out, backward (dout, x) -> dx
_forward_kernel, _backward_kernel = map_kernel(_silu), map2_kernel(_silu_grad)


def forward(x):
    return elementwise(_forward_kernel, (x,))


def backward(dout, x):
    return elementwise(_backward_kernel, (dout, x))
