"""Broadcasting sum on the GPU: one thread per output element; the backward sums over broadcast axes.

Each thread decodes its output index once per input, through that input's broadcast strides
(0 along axes it is broadcast over). The backward is :func:`refvit.kernels.cuda._reduce.sum_to_shape`.
"""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._reduce import broadcast_strides, flat_offset, int_array, sum_to_shape


@cuda.jit
def _add_kernel(a, b, out, out_shape, a_strides, b_strides):
    o = cuda.grid(1)
    if o < out.size:
        out[o] = a[flat_offset(o, out_shape, a_strides)] + b[flat_offset(o, out_shape, b_strides)]


def forward(a, b, out_shape):
    on_device = any_device(a, b)
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    a, b = to_device(a, b)
    out = empty(out_shape, a.dtype)
    if out.size:
        grid = tuple(out_shape) or (1,)
        _add_kernel[grid_1d(out.size)](a.reshape(a.size), b.reshape(b.size), out.reshape(out.size),
                                       int_array(grid), int_array(broadcast_strides(a_shape, grid)),
                                       int_array(broadcast_strides(b_shape, grid)))
    return to_host_unless(on_device, out)


def backward(dout, a_shape, b_shape):
    on_device = any_device(dout)
    return to_host_unless(on_device, sum_to_shape(dout, a_shape), sum_to_shape(dout, b_shape))
