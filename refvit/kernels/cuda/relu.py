"""ReLU on the GPU: one thread per element, forward and backward."""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit
def _forward_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        out[i] = 0.0 if v < 0.0 else v  # NaN compares False and passes through


def forward(x):
    on_device = any_device(x)
    shape = x.shape  # taken before to_device, which turns a 0-d array into shape (1,)
    (x,) = to_device(x)
    out = empty(shape, x.dtype)
    _forward_kernel[grid_1d(x.size)](x.reshape(x.size), out.reshape(out.size))
    return to_host_unless(on_device, out)


@cuda.jit
def _backward_kernel(dout, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = 0.0 if x[i] <= 0.0 else dout[i]


def backward(dout, x):
    on_device = any_device(dout, x)
    shape = x.shape
    dout, x = to_device(dout, x)
    dx = empty(shape, x.dtype)
    _backward_kernel[grid_1d(x.size)](dout.reshape(dout.size), x.reshape(x.size), dx.reshape(dx.size))
    return to_host_unless(on_device, dx)
