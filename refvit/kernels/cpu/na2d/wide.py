r"""The *wide* path of ``na2d`` on the CPU (stride 1, no causal mask): every inner loop runs along the
width of many maps side by side. The layouts and vector loops are in :mod:`.wide_layout`.

The general kernels take one query at a time; their dot products over the head dimension are
reductions that the compiler does not vectorise without reordering sums (and there is no
``fastmath`` here). This path turns the work around so every inner loop runs along the *width*,
where the lanes are independent queries:

* **one dilation group at a time.** Query ``(x, y)`` of group ``(g_h, g_w)`` sits at
  ``(g_h + \delta_h x, g_w + \delta_w y)`` and only sees keys of its own group, where the window rule
  is the one of dilation 1 on the group's ``(H_g, W_g)`` map.
* **wide rows.** ``q, k, v`` (and ``dout``, ``out``) of a group are copied to ``(H_g, d, h + B*heads*W_g + h)``,
  ``h = k_w//2``: map row ``x`` of every map side by side along the last axis (map ``m``, column ``y``
  at position ``h + m W_g + y``), with ``h`` zero columns at both ends. The row window depends on
  ``x`` only, so one loop covers the same row of all maps. A task covers the maps ``[m_0, m_1)`` of
  one row (:class:`refvit.kernels.cpu.na2d.wide_layout.TaskSpan`).
* **shifted rows.** With stride 1 and no causal mask an interior column ``y``
  (``h <= y < W_g - h``) has window start ``y - h``: slot ``w`` holds the key ``y + w - h``, and the
  logits of slot ``(u, w)`` (key row ``r_u``) of a whole wide row are

  .. math::  a_{x,uw}[t] = \sum_c q_x[c, t]\; k_{r_u}[c,\, t + w - h]

  a sum over ``c`` of element-wise products of two shifted rows. The loop over ``t`` has no
  dependence between lanes and vectorises, each lane still summing over ``c`` in a fixed order.
* **border columns, forward.** The ``h`` border columns on each side of every map have clamped column
  windows, but along the *height* their interior rows have shifted windows too. The same kernel,
  :func:`forward_rows`, runs a second time with rows and columns swapped: the border columns (queries)
  and the columns their windows hold (keys, values) are copied to *tall columns* ``(columns, d,
  h_h + B*heads*H_g + h_h)`` and the lanes run along the height. Each pass writes only its interior
  lanes; the border lanes are computed along with the wrong (shifted) windows and dropped. That
  leaves the corners (border row and border column), where all queries of one corner share one
  window: a small dense attention each (:func:`forward_corners`).
* **border columns, backward.** Their queries, and for each column slot the keys (values) they see,
  are gathered once per group into compact *border blocks* where the products are element-wise; their
  results overwrite the border lanes of the shifted products, and their weights are zeroed before
  the shifted weighted sums.
* **softmax** per lane along the row, with :func:`refvit.kernels.cpu.vector_math.exp_shifted`. The
  logits start from the bias and ``q`` is scaled when it is copied, so there is no separate pass for
  either; the weighted sum uses the unnormalised weights and ``out`` and ``attn`` are divided by the
  total as they are written. ``attn (B*heads, H, W, kh*kw)`` is stored exactly as the other paths
  store it, so either path's backward reads either path's cache.
* **backward**: :func:`backward_query_rows` gives :math:`\bar a = p(\delta - g\cdot o)` and
  :math:`\partial L/\partial q`, keeps ``p`` and :math:`\bar a` in the wide layout (:class:`Saved`) and
  sums :math:`\bar a` by bias index into per-(map, row) partials; :func:`backward_key_rows`, per key
  row, gathers ``dk`` and ``dv`` from the query rows whose row window holds it (the inverse row
  table): key ``j`` takes slot ``w`` from interior query ``j - w + h``. Each key row has one writer.

The wide rows multiply across the maps of all batch elements and heads (border lanes by zero
weights), so a NaN or infinity in one map could reach another map's results (``0 * inf``): the
dispatch sends calls with a non-finite input to the general path. The layouts are scratch arrays
kept between calls (:mod:`refvit.kernels.cpu._workspace`). Everything runs in the input dtype.
"""
import functools
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._workspace import scratch
from refvit.kernels.cpu.na2d import wide_layout as layout
from refvit.kernels.cpu.vector_math import exp_shifted
from refvit.ops._neighborhood import axis_bounds, axis_windows, inverse_windows

TARGET_ROW_LENGTH = 256  # maps per task: enough that a wide row holds about this many columns


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


class Placement(NamedTuple):
    """Where a dilation group's wide rows sit (backward): its ``border`` columns, kernel, ``cols``
    lanes per map, maps per task, and its rows' and columns' ``(offset, step)`` in the image."""
    border: np.ndarray
    kernel_h: int
    kernel_w: int
    cols: int
    maps_per_task: int
    rows_at: tuple
    cols_at: tuple


class QueryWindows(NamedTuple):
    """The windows of a group for the query pass: per row its first key row ``row_first`` and bias row
    ``row_bias``, per column the bias column ``col_bias`` of its first key."""
    row_first: np.ndarray
    row_bias: np.ndarray
    col_bias: np.ndarray


class Saved(NamedTuple):
    """What the query pass keeps in wide rows for the key pass, ``(H_g, kh*kw, h + B*heads*W_g + h)``
    each: the weights ``probs`` and :math:`\bar a` ``dlogits``."""
    probs: np.ndarray
    dlogits: np.ndarray


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


@njit(cache=True)
def _interior_sum(segment, half):
    """``sum(segment[half:-half])`` in float64, four running sums side by side."""
    sums = np.zeros(4, dtype=np.float64)
    y = half
    while y + 4 <= segment.shape[0] - half:
        for lane in range(4):
            sums[lane] += segment[y + lane]
        y += 4
    while y < segment.shape[0] - half:
        sums[0] += segment[y]
        y += 1
    return (sums[0] + sums[1]) + (sums[2] + sums[3])


@njit(cache=True, parallel=True)
def backward_query_rows(dout, out, k, v, blocks, attn, scale, windows, place, saved, dq, bias_partials):
    r""":math:`\bar a = p(\delta - g\cdot o)` and ``dq`` of every query of a group: ``dout, out, k, v`` in
    wide rows, ``blocks = (dout, keys, values)`` border blocks, ``windows``: :class:`QueryWindows`,
    ``place``: :class:`Placement`. ``saved``: :class:`Saved`, filled for the key pass; ``dq`` is in the
    global layout; ``bias_partials[m, x]`` sums :math:`\bar a` of row ``x`` of map ``m`` by bias index
    (skipped when it has no rows)."""
    rows, head_dim = k.shape[0], k.shape[1]
    maps = dq.shape[0]
    kernel_h, kernel_w, cols, border = place.kernel_h, place.kernel_w, place.cols, place.border
    half = kernel_w // 2
    slots = kernel_h * kernel_w
    chunks = (maps + place.maps_per_task - 1) // place.maps_per_task
    has_rpb = bias_partials.shape[0] > 0
    dout_blocks, key_blocks, value_blocks = blocks
    row_first, row_bias, col_bias = windows
    probs_wide, dlogits_wide = saved
    (row_offset, row_step), (col_offset, col_step) = place.rows_at, place.cols_at
    maps_per_task = place.maps_per_task
    for task in prange(rows * chunks):
        span = layout.task_span(task, chunks, maps_per_task, maps, cols, half)
        x, first_map, last_map, start, n = span.row, span.first_map, span.last_map, span.start, span.n
        border_start = first_map * 2 * half
        border_n = (last_map - first_map) * 2 * half
        grad_dot_out = np.zeros(n, dtype=k.dtype)
        for c in range(head_dim):
            g = dout[x, c, start:start + n]
            o = out[x, c, start:start + n]
            for t in range(n):
                grad_dot_out[t] += g[t] * o[t]
        probs = np.empty((slots, n), dtype=k.dtype)
        for m in range(first_map, last_map):
            attn_row = attn[m, row_offset + row_step * x]
            for y in range(cols):
                weights = attn_row[col_offset + col_step * y]
                for slot in range(slots):
                    probs[slot, (m - first_map) * cols + y] = weights[slot]
        dlogits = np.empty((slots, n), dtype=k.dtype)
        border_dlogits = np.empty((slots, border_n), dtype=k.dtype)
        for u in range(kernel_h):
            key_row = row_first[x] + u
            for w in range(kernel_w):
                slot = u * kernel_w + w
                layout.shifted_dots(dout[x], v[key_row], start, w - half, dlogits[slot])
                layout.shifted_dots(dout_blocks[x, 0], value_blocks[key_row, w], border_start, 0, border_dlogits[slot])
        layout.to_borders(border_dlogits, cols, border, dlogits)
        for u in range(kernel_h):
            for w in range(kernel_w):
                slot = u * kernel_w + w
                row = dlogits[slot]
                for t in range(n):
                    row[t] = probs[slot, t] * (row[t] - grad_dot_out[t])
                if has_rpb:
                    for m in range(first_map, last_map):
                        partial = bias_partials[m, x, row_bias[x] + u]
                        segment = row[(m - first_map) * cols:(m - first_map + 1) * cols]
                        partial[half + w] += _interior_sum(segment, half)
                        for y in border:
                            partial[col_bias[y] + w] += segment[y]
        probs_wide[x, :, start:start + n] = probs
        dlogits_wide[x, :, start:start + n] = dlogits
        layout.from_borders(dlogits, cols, border, border_dlogits)
        layout.zero_borders(dlogits, cols, border)
        result = np.zeros((head_dim, n), dtype=k.dtype)
        border_result = np.zeros((head_dim, border_n), dtype=k.dtype)
        for u in range(kernel_h):
            row_slots = slice(u * kernel_w, (u + 1) * kernel_w)
            key_row = row_first[x] + u
            layout.add_shifted_products(dlogits[row_slots], k[key_row], start - half, result)
            layout.add_block_products(border_dlogits[row_slots], key_blocks[key_row], border_start, border_result)
        layout.to_borders(border_result, cols, border, result)
        layout.from_wide_row(result, first_map, cols, scale, dq[:, row_offset + row_step * x], (col_offset, col_step))


@njit(cache=True, parallel=True)
def backward_key_rows(q, dout, blocks, saved, scale, row_inverse, col_first, place, dk, dv):
    """``dk``, ``dv`` of every key row of a group, gathered from the query rows whose row window holds it
    (``row_inverse``: :class:`refvit.ops._neighborhood.InverseWindows` of the group's rows): key ``j``
    takes slot ``w`` from interior query ``j - w + h``; ``blocks = (queries, dout)`` border blocks;
    ``saved``: :class:`Saved`. Each key row has one writer: no races and no atomics."""
    rows, head_dim = q.shape[0], q.shape[1]
    maps = dk.shape[0]
    kernel_w, cols, border = place.kernel_w, place.cols, place.border
    half = kernel_w // 2
    chunks = (maps + place.maps_per_task - 1) // place.maps_per_task
    query_blocks, dout_blocks = blocks
    probs_wide, dlogits_wide = saved
    inverse_queries, inverse_slots, inverse_count = row_inverse
    (row_offset, row_step), (col_offset, col_step) = place.rows_at, place.cols_at
    maps_per_task = place.maps_per_task
    for task in prange(rows * chunks):
        span = layout.task_span(task, chunks, maps_per_task, maps, cols, half)
        key_row, first_map, start, n = span.row, span.first_map, span.start, span.n
        border_start = first_map * 2 * half
        border_n = (span.last_map - first_map) * 2 * half
        grad_k = np.zeros((head_dim, n), dtype=q.dtype)
        grad_v = np.zeros((head_dim, n), dtype=q.dtype)
        border_k = np.zeros((kernel_w, head_dim, border_n), dtype=q.dtype)
        border_v = np.zeros((kernel_w, head_dim, border_n), dtype=q.dtype)
        padded = np.empty((kernel_w, n + 2 * half), dtype=q.dtype)
        compact = np.empty((kernel_w, border_n), dtype=q.dtype)
        for a in range(inverse_count[key_row]):
            x = inverse_queries[key_row, a]
            slots = slice(inverse_slots[key_row, a] * kernel_w, (inverse_slots[key_row, a] + 1) * kernel_w)
            dlogits = dlogits_wide[x, slots, start:start + n]
            layout.gather_shifted_products(dlogits, q[x], start, cols, border, padded, grad_k)
            layout.from_borders(dlogits, cols, border, compact)
            layout.add_outer_products(compact, query_blocks[x, 0], border_start, border_k)
            probs = probs_wide[x, slots, start:start + n]
            layout.gather_shifted_products(probs, dout[x], start, cols, border, padded, grad_v)
            layout.from_borders(probs, cols, border, compact)
            layout.add_outer_products(compact, dout_blocks[x, 0], border_start, border_v)
        layout.add_block_keys(border_k, cols, border, col_first, grad_k)
        layout.add_block_keys(border_v, cols, border, col_first, grad_v)
        target_row = row_offset + row_step * key_row
        layout.from_wide_row(grad_k, first_map, cols, scale, dk[:, target_row], (col_offset, col_step))
        layout.from_wide_row(grad_v, first_map, cols, 1.0, dv[:, target_row], (col_offset, col_step))



class _Group:
    """One dilation group: its offsets, map size, window tables (dilation 1) and layouts."""

    def __init__(self, row_group, col_group, height, width, maps, kernel_size, dilation):
        self.rows_at = (row_group, dilation[0])   # (offset, step) in the image
        self.cols_at = (col_group, dilation[1])
        self.rows = len(range(row_group, height, dilation[0]))
        self.cols = len(range(col_group, width, dilation[1]))
        self.maps = maps
        self.kernel_h, self.kernel_w = kernel_size
        self.row_bounds = axis_bounds(self.rows, self.kernel_h)
        self.col_bounds = axis_bounds(self.cols, self.kernel_w)
        self.margin = self.kernel_w // 2
        self.border = _border(self.cols, self.margin)
        self.row_margin = self.kernel_h // 2
        self.row_border = _border(self.rows, self.row_margin)
        # border columns: the key columns their windows hold, and where each window starts among them
        first_keys = self.col_bounds.first_key[self.border]
        self.key_cols = np.unique(first_keys[:, None] + np.arange(self.kernel_w))
        self.border_first_key = np.searchsorted(self.key_cols, first_keys)
        # the flat pixel offset (in an H x W map) of each group row and column
        rows_in_image = (row_group + dilation[0] * np.arange(self.rows)) * width
        cols_in_image = col_group + dilation[1] * np.arange(self.cols)
        self.row_windows = RowWindows(self.row_bounds.first_key, self.row_bounds.first_bias)
        self.row_lanes = Lanes(rows_in_image, cols_in_image, height * width, _maps_per_task(maps, self.cols))
        self.column_windows = RowWindows(self.border_first_key, self.col_bounds.first_bias[self.border])
        self.column_lanes = Lanes(cols_in_image[self.border], rows_in_image, height * width,
                                  _maps_per_task(maps, self.rows))
        self.row_inverse = inverse_windows(axis_windows(self.rows, self.kernel_h))
        self.query_windows = QueryWindows(self.row_bounds.first_key, self.row_bounds.first_bias,
                                          self.col_bounds.first_bias)
        self.placement = Placement(self.border, self.kernel_h, self.kernel_w, self.cols, self.row_lanes.maps_per_task,
                                   self.rows_at, self.cols_at)
        self.corner_axes = (GroupAxis(self.row_bounds.first_key, self.row_bounds.first_bias, self.kernel_h,
                                      row_group, dilation[0]),
                            GroupAxis(self.col_bounds.first_key, self.col_bounds.first_bias, self.kernel_w,
                                      col_group, dilation[1]))

    def wide(self, arrays, factors, names=("q", "k", "v")):
        """Each ``a (B*heads, H, W, d)`` of ``arrays`` -> wide rows ``(rows, d, h + B*heads*cols + h)``,
        times its factor, in the scratch arrays ``names``; one parallel loop for all."""
        dtype, head_dim = arrays[0].dtype, arrays[0].shape[3]
        shape = (self.rows, head_dim, self.maps * self.cols + 2 * self.margin)
        results = tuple(scratch(f"na2d.{name}", shape, dtype) for name in names)
        layout.to_wide_rows(tuple(arrays), self.rows_at, self.cols_at, self.margin, np.array(factors, dtype), results)
        return results

    def tall(self, arrays, columns, factors):
        """Columns ``columns[i]`` of each ``arrays[i] (B*heads, H, W, d)`` -> tall columns
        ``(len(columns[i]), d, kh//2 + B*heads*rows + kh//2)``, times its factor, in scratch arrays."""
        dtype, head_dim = arrays[0].dtype, arrays[0].shape[3]
        length = self.maps * self.rows + 2 * self.row_margin
        results = tuple(scratch(f"na2d.{name}", (chosen.size, head_dim, length), dtype)
                        for name, chosen in zip("qkv", columns))
        layout.to_tall_columns(tuple(arrays), tuple(columns), self.rows_at, self.cols_at, self.row_margin,
                               np.array(factors, dtype), results)
        return results


    def blocks(self, name, a, as_keys):
        """Border blocks of ``a``: ``(rows, kw if as_keys else 1, d, 2h B heads)``, in the scratch array ``name``."""
        slots = self.kernel_w if as_keys else 1
        result = scratch(f"na2d.{name}", (self.rows, slots, a.shape[3], self.maps * self.border.size), a.dtype)
        layout.to_border_blocks(a, self.rows_at, self.cols_at, self.border, self.col_bounds.first_key, as_keys, result)
        return result


def _border(length, margin):
    """The positions of an axis whose window is clamped: ``0..margin-1`` and ``length-margin..length-1``."""
    return np.concatenate((np.arange(margin), np.arange(length - margin, length)))


def _maps_per_task(maps, lanes):
    return max(1, min(maps, -(-TARGET_ROW_LENGTH // lanes)))


def _groups(height, width, maps, options):
    """The dilation groups of a call (their tables are kept for the next call of the same geometry)."""
    return _cached_groups(height, width, maps, tuple(options.kernel_size), tuple(options.dilation), TARGET_ROW_LENGTH)


@functools.lru_cache(maxsize=32)
def _cached_groups(height, width, maps, kernel_size, dilation, target_row_length):
    return tuple(_Group(row_group, col_group, height, width, maps, kernel_size, dilation)
                 for row_group in range(dilation[0]) for col_group in range(dilation[1]))


def _flat(a):
    batch, heads = a.shape[:2]
    return np.ascontiguousarray(a).reshape((batch * heads,) + a.shape[2:])


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> ``(out, attn)``,
    ``attn (B, heads, H, W, kh*kw)``; stride 1 and no causal mask.

    Per dilation group, three passes that together write every query once: the wide rows (interior
    columns, every row), the tall columns (border columns, interior rows) and the corners."""
    batch, heads, height, width, head_dim = q.shape
    kernel_h, kernel_w = options.kernel_size
    bias = np.zeros((heads, 0, 0), q.dtype) if rpb is None else np.ascontiguousarray(rpb)
    bias_by_column = np.ascontiguousarray(bias.transpose(0, 2, 1))
    q, k, v = (_flat(a) for a in (q, k, v))
    out = np.empty_like(q)
    attn = np.empty(q.shape[:3] + (kernel_h * kernel_w,), q.dtype)
    pixel_out, pixel_attn = out.reshape(-1, head_dim), attn.reshape(-1, kernel_h * kernel_w)
    factors = (options.scale, 1.0, 1.0)
    for g in _groups(height, width, q.shape[0], options):
        forward_rows(*g.wide((q, k, v), factors), bias, heads, g.row_windows, g.row_lanes,
                     Slots(kernel_h, kernel_w, kernel_w, 1), pixel_out, pixel_attn)
        if g.border.size == 0:
            continue
        # Border columns: the same kernel with rows and columns swapped, lanes along the height.
        forward_rows(*g.tall((q, k, v), (g.border, g.key_cols, g.key_cols), factors), bias_by_column, heads,
                     g.column_windows, g.column_lanes, Slots(kernel_w, kernel_h, 1, kernel_w), pixel_out, pixel_attn)
        if g.row_margin > 0:
            sides = (g.row_border.reshape(2, -1), g.border.reshape(2, -1))
            forward_corners(q, k, v, bias, heads, q.dtype.type(options.scale), sides, *g.corner_axes, out, attn)
    return out.reshape((batch, heads, height, width, head_dim)), attn.reshape((batch, heads, height, width, -1))


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None; stride 1 and no causal mask.

    Per dilation group, a query pass (:func:`backward_query_rows`) and a key pass
    (:func:`backward_key_rows`); border columns go through compact border blocks."""
    batch, heads, height, width, head_dim = q.shape
    kernel_h, kernel_w = options.kernel_size
    scale = q.dtype.type(options.scale)
    dout, q, k, v, out, attn = (_flat(a) for a in (dout, q, k, v, out, attn))
    maps = q.shape[0]
    dq, dk, dv = (np.empty_like(q) for _ in range(3))
    drpb = None if rpb is None else np.zeros(rpb.shape, np.float64)
    for g in _groups(height, width, maps, options):
        wide_dout, wide_out, wide_k, wide_v, wide_q = g.wide((dout, out, k, v, q), (1.0,) * 5,
                                                             ("dout", "out", "k", "v", "q"))
        dout_blocks = g.blocks("dout_blocks", dout, False)
        wide_shape = (g.rows, kernel_h * kernel_w, maps * g.cols + 2 * g.margin)
        saved = Saved(scratch("na2d.probs", wide_shape, q.dtype), scratch("na2d.dlogits", wide_shape, q.dtype))
        bias_shape = (0, 0, 0, 0) if rpb is None else (maps, g.rows) + tuple(rpb.shape[1:])
        bias_partials = np.zeros(bias_shape, np.float64)
        blocks = (dout_blocks, g.blocks("k_blocks", k, True), g.blocks("v_blocks", v, True))
        backward_query_rows(wide_dout, wide_out, wide_k, wide_v, blocks, attn, scale, g.query_windows, g.placement,
                            saved, dq, bias_partials)
        backward_key_rows(wide_q, wide_dout, (g.blocks("q_blocks", q, False), dout_blocks), saved, scale,
                          g.row_inverse, g.col_bounds.first_key, g.placement, dk, dv)
        if rpb is not None:
            drpb += bias_partials.reshape((batch, heads, g.rows) + tuple(rpb.shape[1:])).sum(axis=(0, 2))
    shape = (batch, heads, height, width, head_dim)
    return (dq.reshape(shape), dk.reshape(shape), dv.reshape(shape),
            None if drpb is None else drpb.astype(q.dtype))
