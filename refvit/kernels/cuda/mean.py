"""Mean over axes on the GPU.

The forward is :func:`refvit.kernels.cuda._reduce.sum_over_axes` scaled by ``1/count``. The
backward broadcasts ``dout / count`` back over the reduced axes, one thread per element of ``dx``,
each reading ``dout`` through strides that are 0 along the reduced axes.
"""
import math

from numba import cuda

from refvit.kernels._shapes import reduced_shape
from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._reduce import broadcast_strides, flat_offset, int_array, sum_over_axes


def forward(x, axes, keepdims, count):
    on_device = any_device(x)
    out = sum_over_axes(x, axes, keepdims, 1.0 / count if count else math.nan)
    return to_host_unless(on_device, out)


@cuda.jit
def _broadcast_scaled_kernel(src, out, out_shape, src_strides, scale):
    o = cuda.grid(1)
    if o < out.size:
        out[o] = src[flat_offset(o, out_shape, src_strides)] * scale


def backward(dout, x_shape, axes, count):
    """``dx = dout / count`` broadcast back over ``axes`` to ``x_shape``."""
    on_device = any_device(dout)
    (dout,) = to_device(dout)
    dx = empty(x_shape, dout.dtype)
    if dx.size:
        grid = tuple(x_shape) or (1,)
        kept_shape = reduced_shape(grid, axes, keepdims=True)
        _broadcast_scaled_kernel[grid_1d(dx.size)](dout.reshape(dout.size), dx.reshape(dx.size), int_array(grid),
                                                   int_array(broadcast_strides(kept_shape, grid)), 1.0 / count)
    return to_host_unless(on_device, dx)
