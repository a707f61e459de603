"""ReLU on the GPU: one thread per element, forward and backward."""
from numba import cuda

from refvit.kernels.cuda._device import elementwise, map2_kernel, map_kernel


@cuda.jit(device=True)
def _relu(v):
    return 0.0 if v < 0.0 else v  # NaN compares False and passes through


@cuda.jit(device=True)
def _relu_grad(g, v):
    return 0.0 if v <= 0.0 else g


# one thread per element: forward x -> out, backward (dout, x) -> dx
_forward_kernel, _backward_kernel = map_kernel(_relu), map2_kernel(_relu_grad)


def forward(x):
    return elementwise(_forward_kernel, (x,))


def backward(dout, x):
    return elementwise(_backward_kernel, (dout, x))
