"""Shape bookkeeping shared by kernels: strides, broadcasting and reduction plans (pure Python).

Every array reaching a kernel is C-contiguous and flattened; an axis of it is described by its
size and its element stride. These helpers turn shapes and axes into those small int64 arrays:

* ``broadcast_strides(shape, out_shape)``: the strides with which an array of ``shape`` is read
  at every index of ``out_shape`` (0 along broadcast axes);
* ``reduction_plan(shape, axes)``: sizes and strides of the kept axes and of the summed axes,
  with the last summed axis (the one with the smallest stride) kept apart as the inner loop.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


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
