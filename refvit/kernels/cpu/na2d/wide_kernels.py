r"""The ``numba`` kernels of the ``wide`` path of ``na2d`` and the named tuples they take.

:mod:`refvit.kernels.cpu.na2d.wide` lays the data out (one dilation group at a time) and calls these; the
layouts and the vector loops are in :mod:`refvit.kernels.cpu.na2d.wide_layout`. See the former's docstring
for the method: wide rows, tall columns and corners. The path is a forward one only.

Numba's on-disk cache of these kernels does not notice edits to the helpers in ``wide_layout`` by itself;
:mod:`refvit.kernels.cpu._stale_cache` drops them when ``wide_layout`` changes.
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.na2d import wide_layout as layout
from refvit.kernels.cpu.vector_math import exp_shifted


class RowWindows(NamedTuple):
    """Per wide row ``i``: its first key row ``first[i]`` and the bias row of that key ``bias[i]``."""
    first: np.ndarray
    bias: np.ndarray


class Lanes(NamedTuple):
    """Where the lanes of a pass go: lane ``y`` of map ``m`` in row ``i`` is pixel
    ``m*map_pixels + targets[i] + lane_pixels[y]`` of ``out (pixels, d)``; ``maps_per_task`` maps per task."""
    targets: np.ndarray
    lane_pixels: np.ndarray
    map_pixels: int
    maps_per_task: int


class Slots(NamedTuple):
    """The window of a pass: ``row_kernel`` key rows of ``lane_kernel`` keys; slot ``(u, w)`` is stored
    at ``u*row_step + w*lane_step`` of a query's ``attn`` (``(kw, 1)`` for wide rows, ``(1, kw)`` for
    tall columns)."""
    row_kernel: int
    lane_kernel: int
    row_step: int
    lane_step: int


class GroupAxis(NamedTuple):
    """One axis of a dilation group for :func:`forward_corners`: window ``first`` key and ``bias`` per
    group position, the ``kernel`` size, and the group's ``offset`` and ``step`` in the image."""
    first: np.ndarray
    bias: np.ndarray
    kernel: int
    offset: int
    step: int


@njit(cache=True, parallel=True, error_model="numpy")
def forward_rows(q, k, v, rpb, heads, windows, lanes, slots, out, attn):
    """The interior lanes of wide rows: ``q (rows, d, h + maps*L + h)`` (already scaled), ``k, v (key
    rows, d, same)``, ``h = slots.lane_kernel // 2``, ``L = len(lanes.lane_pixels)``; row ``i`` sees the
    key rows ``windows.first[i] + u`` (``u < slots.row_kernel``) with the bias rows ``windows.bias[i] + u``
    of ``rpb (heads, 2 row_kernel - 1, 2 lane_kernel - 1)`` (0 rows: none).

    ``windows``: :class:`RowWindows`, ``lanes``: :class:`Lanes`, ``slots``: :class:`Slots`; results go to
    ``out (pixels, d)`` and ``attn (pixels, row_kernel*lane_kernel)``. Only the lanes ``h <= y < L - h``
    are written; border lanes are computed along (with shifted windows that are not theirs) and dropped."""
    rows, head_dim = q.shape[0], q.shape[1]
    row_kernel, lane_kernel = slots.row_kernel, slots.lane_kernel
    width = lanes.lane_pixels.shape[0]
    half = lane_kernel // 2
    maps = (q.shape[2] - 2 * half) // width
    slot_count = row_kernel * lane_kernel
    maps_per_task = lanes.maps_per_task
    chunks = (maps + maps_per_task - 1) // maps_per_task
    has_rpb = rpb.shape[1] > 0
    for task in prange(rows * chunks):
        span = layout.task_span(task, chunks, maps_per_task, maps, width, half)
        i, n = span.row, span.n
        task_maps = span.last_map - span.first_map
        weights = np.empty((slot_count, n), dtype=q.dtype)
        for u in range(row_kernel):
            keys = k[windows.first[i] + u]
            for w in range(lane_kernel):
                logits = weights[u * lane_kernel + w]
                for j in range(task_maps):  # the sums start from the bias
                    if has_rpb:
                        logits[j * width:(j + 1) * width] = rpb[(span.first_map + j) % heads, windows.bias[i] + u,
                                                                half + w]
                    else:
                        logits[j * width:(j + 1) * width] = 0.0
                layout.add_shifted_dots(q[i], keys, span.start, w - half, logits)
        largest = weights[0].copy()
        for slot in range(1, slot_count):
            logits = weights[slot]
            for t in range(n):
                largest[t] = max(largest[t], logits[t])
        total = np.zeros(n, dtype=q.dtype)
        powers = np.empty(n, dtype=q.dtype)
        for slot in range(slot_count):
            row = weights[slot]
            exp_shifted(row, largest, powers)
            for t in range(n):
                total[t] += row[t]
        for t in range(n):
            total[t] = 1.0 / total[t]
        result = np.zeros((head_dim, n), dtype=q.dtype)  # unnormalised: divided by the total when written
        for u in range(row_kernel):
            layout.add_shifted_products(weights[u * lane_kernel:(u + 1) * lane_kernel], v[windows.first[i] + u],
                                        span.start - half, result)
        for j in range(task_maps):
            for y in range(half, width - half):
                t = j * width + y
                pixel = (span.first_map + j) * lanes.map_pixels + lanes.targets[i] + lanes.lane_pixels[y]
                inverse_total = total[t]
                target = out[pixel]
                for c in range(head_dim):
                    target[c] = result[c, t] * inverse_total
                probs = attn[pixel]
                for u in range(row_kernel):
                    for w in range(lane_kernel):
                        slot = u * slots.row_step + w * slots.lane_step
                        probs[slot] = weights[u * lane_kernel + w, t] * inverse_total


@njit(cache=True, parallel=True)
def forward_corners(q, k, v, rpb, heads, scale, sides, rows, cols, out, attn):
    """The corners: queries ``sides[0][a] x sides[1][b]`` (group positions; ``a, b`` in 0, 1 for the two
    ends of an axis) of every map, where neither the wide rows nor the tall columns have shifted
    windows. All queries of one corner share one window, so it is a small dense attention: the keys
    go to ``(d, kh*kw)``, the values to ``(kh*kw, d)``, and every loop runs along the slots or ``d``.
    ``rows, cols``: :class:`GroupAxis`; ``q, k, v, out (B*heads, H, W, d)``, ``attn (B*heads, H, W, kh*kw)``."""
    maps, head_dim = q.shape[0], q.shape[3]
    kernel_h, kernel_w = rows.kernel, cols.kernel
    slot_count = kernel_h * kernel_w
    has_rpb = rpb.shape[1] > 0
    for task in prange(maps * 4):
        m = task // 4
        corner_rows = sides[0][(task % 4) // 2]
        corner_cols = sides[1][task % 2]
        first_row, first_col = rows.first[corner_rows[0]], cols.first[corner_cols[0]]
        keys = np.empty((head_dim, slot_count), dtype=q.dtype)
        values = np.empty((slot_count, head_dim), dtype=q.dtype)
        for u in range(kernel_h):
            for w in range(kernel_w):
                pixel = (m, rows.offset + rows.step * (first_row + u), cols.offset + cols.step * (first_col + w))
                keys[:, u * kernel_w + w] = k[pixel]
                values[u * kernel_w + w] = v[pixel]
        powers = np.empty(slot_count, dtype=q.dtype)
        for x in corner_rows:
            for y in corner_cols:
                query = q[m, rows.offset + rows.step * x, cols.offset + cols.step * y]
                weights = attn[m, rows.offset + rows.step * x, cols.offset + cols.step * y]
                weights[:] = 0.0
                for c in range(head_dim):
                    channel = keys[c]
                    for slot in range(slot_count):
                        weights[slot] += query[c] * channel[slot]
                for slot in range(slot_count):
                    weights[slot] *= scale
                if has_rpb:
                    for u in range(kernel_h):
                        bias_row = rpb[m % heads, rows.bias[x] + u]
                        for w in range(kernel_w):
                            weights[u * kernel_w + w] += bias_row[cols.bias[y] + w]
                exp_shifted(weights, weights.max(), powers)
                inverse_total = 1.0 / weights.sum()
                result = out[m, rows.offset + rows.step * x, cols.offset + cols.step * y]
                result[:] = 0.0
                for slot in range(slot_count):
                    weights[slot] *= inverse_total
                    value = values[slot]
                    for c in range(head_dim):
                        result[c] += weights[slot] * value[c]

