"""Broadcasting product on the CPU.

The forward reads each input through its broadcast strides, one output row (the last axis) per
``prange`` iteration. The backward runs the same kernel on ``dout`` and the other input, then sums
over the broadcast axes with :func:`refvit.kernels.cpu.mean.sum_to_shape`.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.mean import broadcast_strides, flat_offset, sum_to_shape


@njit(cache=True, parallel=True)
def _mul_kernel(a, b, out, out_shape, a_strides, b_strides):
    width = out_shape[-1]
    a_step = a_strides[-1]
    b_step = b_strides[-1]
    for row in prange(out.size // width):
        a_start = flat_offset(row, out_shape[:-1], a_strides[:-1])
        b_start = flat_offset(row, out_shape[:-1], b_strides[:-1])
        for j in range(width):
            out[row * width + j] = a[a_start + j * a_step] * b[b_start + j * b_step]


def _broadcast_product(a, b, out_shape):
    a = np.asarray(a, order="C")
    b = np.asarray(b, order="C")
    out = np.empty(out_shape, dtype=a.dtype)
    if out.size:
        grid = tuple(out_shape) or (1,)
        _mul_kernel(a.reshape(-1), b.reshape(-1), out.reshape(-1), np.array(grid, dtype=np.int64),
                    broadcast_strides(a.shape, grid), broadcast_strides(b.shape, grid))
    return out


def forward(a, b, out_shape):
    return _broadcast_product(a, b, out_shape)


def backward(dout, a, b):
    """``da = sum_to(dout * b)``, ``db = sum_to(dout * a)``."""
    out_shape = dout.shape
    return (sum_to_shape(_broadcast_product(dout, b, out_shape), a.shape),
            sum_to_shape(_broadcast_product(dout, a, out_shape), b.shape))
