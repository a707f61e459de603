"""Mean over axes on the CPU, and the sum-over-axes kernel behind the backward of ``add`` and ``mul``.

Every array reaching a kernel is C-contiguous and flattened; an axis of it is described by its
size and its element stride. The host-side bookkeeping here (pure Python, also used by the
``cuda`` kernels) turns shapes and axes into those small int64 arrays:

* ``broadcast_strides(shape, out_shape)``: the strides with which an array of ``shape`` is read
  at every index of ``out_shape`` (0 along broadcast axes);
* ``reduction_plan(shape, axes)``: sizes and strides of the kept axes and of the summed axes,
  with the last summed axis (the one with the smallest stride) kept apart as the inner loop.

The kernels gather: ``prange`` runs over the elements written, each one reads what it needs.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange


def c_strides(shape):
    """Element strides of a C-contiguous array of ``shape`` (int64 array)."""
    strides = np.ones(len(shape), dtype=np.int64)
    for axis in range(len(shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    return strides


def broadcast_strides(shape, out_shape):
    """Element strides that read a C-contiguous ``shape`` array at each index of ``out_shape``.

    ``shape`` is aligned to the right of ``out_shape``; the missing leading axes and the size-1
    axes that broadcast get stride 0.
    """
    lead = len(out_shape) - len(shape)
    own = c_strides(shape)
    strides = np.zeros(len(out_shape), dtype=np.int64)
    for axis, size in enumerate(shape):
        if not (size == 1 and out_shape[lead + axis] != 1):
            strides[lead + axis] = own[axis]
    return strides


def reduced_shape(shape, axes, keepdims):
    """The shape left after summing ``shape`` over ``axes``."""
    if keepdims:
        return tuple(1 if axis in axes else size for axis, size in enumerate(shape))
    return tuple(size for axis, size in enumerate(shape) if axis not in axes)


def broadcast_axes(shape, target):
    """The axes of ``shape`` to sum so that what is left broadcasts back exactly as ``target`` did."""
    lead = len(shape) - len(target)
    return tuple(range(lead)) + tuple(
        lead + axis for axis, size in enumerate(target) if size == 1 and shape[lead + axis] != 1)


class ReductionPlan(NamedTuple):
    """How a C-contiguous array is walked to sum it over some axes.

    Size-1 axes are dropped and runs of adjacent kept (or summed) axes are merged into one axis.
    The output is ``rows x width``: ``width`` is the innermost kept run when the last axis is kept
    (contiguous, stride 1), else 1; ``row_*`` are the other kept runs. The summed runs are
    ``outer_*`` plus the innermost one, ``inner_size`` elements ``inner_stride`` apart.
    Empty lists are padded with one axis of size 1 and stride 0 so that no array is empty.
    """
    row_sizes: np.ndarray
    row_strides: np.ndarray
    width: int
    outer_sizes: np.ndarray
    outer_strides: np.ndarray
    outer_count: int
    inner_size: int
    inner_stride: int


def merged_runs(shape, axes):
    """``[(size, stride, summed), ...]``, outermost first: size-1 axes dropped, adjacent axes of one kind merged."""
    strides = c_strides(shape)
    runs = []
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        summed = axis in axes
        if runs and runs[-1][2] == summed:
            runs[-1] = (runs[-1][0] * size, int(strides[axis]), summed)  # C order: the run's stride is its innermost
        else:
            runs.append((size, int(strides[axis]), summed))
    return runs


def reduction_plan(shape, axes):
    runs = merged_runs(shape, axes)
    width = runs.pop()[0] if runs and not runs[-1][2] else 1
    kept = [(size, stride) for size, stride, summed in runs if not summed]
    summed = [(size, stride) for size, stride, is_summed in runs if is_summed]
    inner_size, inner_stride = summed.pop() if summed else (1, 0)

    def as_arrays(pairs):
        pairs = pairs or [(1, 0)]
        return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)

    row_sizes, row_strides = as_arrays(kept)
    outer_sizes, outer_strides = as_arrays(summed)
    return ReductionPlan(row_sizes, row_strides, width, outer_sizes, outer_strides, math.prod(outer_sizes.tolist()),
                         inner_size, inner_stride)


@njit(cache=True)
def flat_offset(index, sizes, strides):
    """Element offset of the ``index``-th point, in row-major order, of a grid of ``sizes`` read with ``strides``."""
    rest = np.int64(index)  # a prange index may be unsigned; unsigned with signed would type as float
    offset = np.int64(0)
    for axis in range(sizes.size - 1, -1, -1):
        offset += (rest % sizes[axis]) * strides[axis]
        rest //= sizes[axis]
    return offset


@njit(cache=True, parallel=True)
def _sum_kernel(x, out, row_sizes, row_strides, width, outer_sizes, outer_strides, outer_count,
                inner_size, inner_stride, scale):
    """``out[row, j] = scale * (sum of x over the summed axes)``, one output row per iteration.

    Each row accumulates ``width`` contiguous elements at a time in float64, so summing over
    leading axes (a bias gradient) reads memory in order.
    """
    for row in prange(out.size // width):
        base = flat_offset(row, row_sizes, row_strides)
        total = np.zeros(width)
        for r in range(outer_count):
            start = base + flat_offset(r, outer_sizes, outer_strides)
            for i in range(inner_size):
                at = start + i * inner_stride
                for j in range(width):
                    total[j] += x[at + j]
        for j in range(width):
            out[row * width + j] = total[j] * scale


def sum_over_axes(x, axes, keepdims=False, scale=1.0):
    """``scale * x.sum(axis=axes, keepdims=keepdims)`` as a new array; ``axes`` non-negative and distinct."""
    x = np.asarray(x, order="C")
    out_shape = reduced_shape(x.shape, axes, keepdims)
    if all(x.shape[axis] == 1 for axis in axes):  # nothing to add up
        return (x * scale if scale != 1.0 else x.copy()).reshape(out_shape)
    out = np.empty(out_shape, dtype=x.dtype)
    if x.size == 0:
        out.fill(0.0 * scale)  # an empty sum; NaN for the mean over no elements
    elif out.size:
        _sum_kernel(x.reshape(-1), out.reshape(-1), *reduction_plan(x.shape, axes), scale)
    return out


def sum_to_shape(x, shape):
    """Sum ``x`` over the axes along which an array of ``shape`` was broadcast to ``x.shape``."""
    return sum_over_axes(x, broadcast_axes(x.shape, shape), keepdims=True).reshape(shape)


@njit(cache=True, parallel=True)
def _broadcast_scaled_kernel(src, out, out_shape, src_strides, scale):
    """``out[row, j] = scale * src[...]``: one output row (the last axis) per iteration."""
    width = out_shape[-1]
    step = src_strides[-1]
    for row in prange(out.size // width):
        start = flat_offset(row, out_shape[:-1], src_strides[:-1])
        for j in range(width):
            out[row * width + j] = src[start + j * step] * scale


def broadcast_scaled(src, src_shape, out_shape, scale):
    """``scale * np.broadcast_to(src.reshape(src_shape), out_shape)`` as a new C-contiguous array."""
    src = np.asarray(src, order="C").reshape(-1)
    out = np.empty(out_shape, dtype=src.dtype)
    if out.size:
        grid = tuple(out_shape) or (1,)
        _broadcast_scaled_kernel(src, out.reshape(-1), np.array(grid, dtype=np.int64),
                                 broadcast_strides(src_shape, grid), scale)
    return out


def forward(x, axes, keepdims, count):
    """Mean of ``x`` over ``axes`` (``count`` elements each)."""
    return sum_over_axes(x, axes, keepdims, 1.0 / count if count else math.nan)


def backward(dout, x_shape, axes, count):
    """``dx = dout / count``, broadcast back over ``axes`` to ``x_shape``."""
    return broadcast_scaled(dout, reduced_shape(x_shape, axes, keepdims=True), x_shape,
                            1.0 / count if count else 0.0)
