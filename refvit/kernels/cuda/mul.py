"""Broadcasting product on the GPU: one thread per output element.

Each thread decodes its output index once per input, through that input's broadcast strides.
The backward runs the same kernel on ``dout`` and the other input, then sums over the
broadcast axes with :func:`refvit.kernels.cuda._reduce.sum_to_shape`.
"""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._reduce import broadcast_strides, flat_offset, int_array, sum_to_shape


@cuda.jit
def _mul_kernel(a, b, out, out_shape, a_strides, b_strides):
    o = cuda.grid(1)
    if o < out.size:
        out[o] = a[flat_offset(o, out_shape, a_strides)] * b[flat_offset(o, out_shape, b_strides)]


def _broadcast_product(a, b, out_shape):
    """``a * b`` broadcast to ``out_shape``, as a device array."""
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    a, b = to_device(a, b)
    out = empty(out_shape, a.dtype)
    if out.size:
        grid = tuple(out_shape) or (1,)
        _mul_kernel[grid_1d(out.size)](a.reshape(a.size), b.reshape(b.size), out.reshape(out.size),
                                       int_array(grid), int_array(broadcast_strides(a_shape, grid)),
                                       int_array(broadcast_strides(b_shape, grid)))
    return out


def forward(a, b, out_shape):
    return to_host_unless(any_device(a, b), _broadcast_product(a, b, out_shape))


def backward(dout, a, b):
    """``da = sum_to(dout * b)``, ``db = sum_to(dout * a)``."""
    on_device = any_device(dout, a, b)
    out_shape = tuple(dout.shape)
    (dout,) = to_device(dout)
    da = sum_to_shape(_broadcast_product(dout, b, out_shape), tuple(a.shape))
    db = sum_to_shape(_broadcast_product(dout, a, out_shape), tuple(b.shape))
    return to_host_unless(on_device, da, db)
