"""Sum a device array over a set of axes, and the index arithmetic of broadcasting, on the GPU.

* :func:`sum_over_axes` ``(x, axes, keepdims=False, scale=1.0)``: ``scale * x.sum(axis=axes, keepdims=keepdims)``;
* :func:`sum_to_shape` ``(x, shape)``: the adjoint of broadcasting an array of ``shape`` to ``x.shape``
  (sums the leading axes and the broadcast size-1 axes), the backward of every broadcasting op;
* :func:`flat_offset`: a device function, the element offset of the ``index``-th point of a grid read
  through given strides (0 along broadcast axes);
* :func:`broadcast_binary` ``(a, b, out_shape, multiply)``: ``a * b`` or ``a + b`` broadcast to
  ``out_shape``, one thread per output element reading each input through its broadcast strides.

Gather form: one thread per output element, each summing its own inputs in a float64
accumulator, so there are no atomics and the result does not depend on scheduling. Size-1 axes
are dropped and adjacent summed (or kept) axes merged first (:func:`reduction_plan`), so the
loops are as few and as long as the shapes allow. Inputs may be
NumPy or device arrays; results are device arrays. The shape bookkeeping on the host is shared
with :mod:`refvit.kernels._shapes`.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from refvit.kernels._shapes import broadcast_axes, broadcast_strides, reduced_shape, reduction_plan
from refvit.kernels.cuda._device import empty, fill, grid_1d, to_device

__all__ = ["broadcast_binary", "broadcast_strides", "flat_offset", "int_array", "sum_over_axes", "sum_to_shape"]


@cuda.jit(device=True)
def flat_offset(index, sizes, strides):
    """Element offset of the ``index``-th point, in row-major order, of a grid of ``sizes`` read with ``strides``."""
    offset = 0
    for axis in range(sizes.size - 1, -1, -1):
        offset += (index % sizes[axis]) * strides[axis]
        index //= sizes[axis]
    return offset


def int_array(values):
    """A small int64 device array (shapes and strides for a kernel)."""
    return cuda.to_device(np.asarray(values, dtype=np.int64))


@cuda.jit
def _sum_kernel(x, out, row_sizes, row_strides, width, outer_sizes, outer_strides, outer_count,
                inner_size, inner_stride, scale):
    o = cuda.grid(1)
    if o < out.size:
        row = o // width
        base = flat_offset(row, row_sizes, row_strides) + (o - row * width)
        total = 0.0
        for r in range(outer_count):
            start = base + flat_offset(r, outer_sizes, outer_strides)
            for i in range(inner_size):
                total += x[start + i * inner_stride]
        out[o] = total * scale


def sum_over_axes(x, axes, keepdims=False, scale=1.0):
    """``scale * x.sum(axis=axes, keepdims=keepdims)`` as a new device array; ``axes`` non-negative and distinct."""
    shape = tuple(x.shape)  # before to_device, which makes a 0-d array 1-D
    (x,) = to_device(x)
    out = empty(reduced_shape(shape, axes, keepdims), x.dtype)
    if x.size == 0:
        fill(out, 0.0 * scale)  # an empty sum; NaN for the mean over no elements
    elif out.size:
        plan = reduction_plan(shape, axes)
        _sum_kernel[grid_1d(out.size)](
            x.reshape(x.size), out.reshape(out.size), int_array(plan.row_sizes), int_array(plan.row_strides),
            plan.width, int_array(plan.outer_sizes), int_array(plan.outer_strides), plan.outer_count,
            plan.inner_size, plan.inner_stride, scale)
    return out


def sum_to_shape(x, shape):
    """Sum ``x`` over the axes along which an array of ``shape`` was broadcast to ``x.shape``; a device array."""
    return sum_over_axes(x, broadcast_axes(tuple(x.shape), shape), keepdims=True).reshape(shape)


@cuda.jit
def _broadcast_binary_kernel(a, b, out, out_shape, a_strides, b_strides, multiply):
    o = cuda.grid(1)
    if o < out.size:
        left = a[flat_offset(o, out_shape, a_strides)]
        right = b[flat_offset(o, out_shape, b_strides)]
        out[o] = left * right if multiply else left + right


def broadcast_binary(a, b, out_shape, multiply):
    """``a * b`` (``multiply``) or ``a + b`` broadcast to ``out_shape``, as a new device array of ``a``'s dtype."""
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    a, b = to_device(a, b)
    out = empty(out_shape, a.dtype)
    if out.size:
        grid = tuple(out_shape) or (1,)
        _broadcast_binary_kernel[grid_1d(out.size)](
            a.reshape(a.size), b.reshape(b.size), out.reshape(out.size), int_array(grid),
            int_array(broadcast_strides(a_shape, grid)), int_array(broadcast_strides(b_shape, grid)), multiply)
    return out
