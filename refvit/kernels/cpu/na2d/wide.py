r"""The *wide* path of ``na2d`` on the CPU (forward only; stride 1, no causal mask): every inner loop
runs along the width of many maps side by side.

The general kernels take one query at a time; their dot products over the head dimension are
reductions that the compiler does not vectorise without reordering sums (and there is no
``fastmath`` here). This path turns the work around so every inner loop runs along the *width*,
where the lanes are independent queries:

* **one dilation group at a time.** Query ``(x, y)`` of group ``(g_h, g_w)`` sits at
  ``(g_h + \delta_h x, g_w + \delta_w y)`` and only sees keys of its own group, where the window rule
  is the one of dilation 1 on the group's ``(H_g, W_g)`` map.
* **wide rows.** ``q, k, v`` of a group are copied to ``(H_g, d, h + B*heads*W_g + h)``,
  ``h = k_w//2``: map row ``x`` of every map side by side along the last axis (map ``m``, column ``y``
  at position ``h + m W_g + y``), with ``h`` zero columns at both ends. The row window depends on
  ``x`` only, so one loop covers the same row of all maps. A task of :func:`forward_rows` covers the
  maps ``[m_0, m_1)`` of one row (:class:`TaskSpan`).
* **shifted rows.** With stride 1 and no causal mask an interior column ``y``
  (``h <= y < W_g - h``) has window start ``y - h``: slot ``w`` holds the key ``y + w - h``, and the
  logits of slot ``(u, w)`` (key row ``r_u``) of a whole wide row are

  .. math::  a_{x,uw}[t] = \sum_c q_x[c, t]\; k_{r_u}[c,\, t + w - h]

  a sum over ``c`` of element-wise products of two shifted rows. The loop over ``t`` has no
  dependence between lanes and vectorises, each lane still summing over ``c`` in a fixed order.
* **border columns.** The ``h`` border columns on each side of every map have clamped column
  windows, but along the *height* their interior rows have shifted windows too. The same kernel,
  :func:`forward_rows`, runs a second time with rows and columns swapped: the border columns (queries)
  and the columns their windows hold (keys, values) are copied to *tall columns* ``(columns, d,
  h_h + B*heads*H_g + h_h)`` and the lanes run along the height. Each pass writes only its interior
  lanes; the border lanes are computed along with the wrong (shifted) windows and dropped. That
  leaves the corners (border row and border column), where all queries of one corner share one
  window: a small dense attention each (:func:`forward_corners`).
* **softmax** per lane along the row, with :func:`refvit.kernels.cpu.vector_math.exp_shifted`. The
  logits start from the bias and ``q`` is scaled when it is copied, so there is no separate pass for
  either; the weighted sum uses the unnormalised weights and ``out`` and ``attn`` are divided by the
  total as they are written. ``attn (B*heads, H, W, kh*kw)`` is stored exactly as the other paths
  store it, so their backward reads it.

The wide rows multiply across the maps of all batch elements and heads (border lanes by zero
weights), so a NaN or infinity in one map could reach another map's outputs (``0 * inf``): the
dispatch sends calls with a non-finite input to the general path. The layouts are scratch arrays
kept between calls (:mod:`refvit.kernels.cpu._workspace`). Everything runs in the input dtype.
"""
import functools
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._workspace import scratch
from refvit.kernels.cpu.vector_math import exp_shifted
from refvit.ops._neighborhood import axis_bounds

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


class TaskSpan(NamedTuple):
    """Task of :func:`forward_rows`: its ``row``, its maps ``[first_map, last_map)`` and their lanes,
    positions ``start .. start + n`` of the wide row."""
    row: int
    first_map: int
    last_map: int
    start: int
    n: int


class GroupAxis(NamedTuple):
    """One axis of a dilation group for :func:`forward_corners`: window ``first`` key and ``bias`` per
    group position, the ``kernel`` size, and the group's ``offset`` and ``step`` in the image."""
    first: np.ndarray
    bias: np.ndarray
    kernel: int
    offset: int
    step: int


@njit(cache=True, parallel=True)
def to_wide_rows(arrays, rows, cols, margin, factors, results):
    """For each ``a = arrays[i]`` (a tuple of ``(B*heads, H, W, d)`` arrays, all copied in one parallel
    loop): ``results[i][x, c, margin + m*cols + y] = factors[i] * a[m, row_offset + row_step*x,
    col_offset + col_step*y, c]`` over the positions of one dilation group (``rows, cols``:
    ``(offset, step)``), and zero margins. ``factors`` has the dtype of the arrays (1 copies exactly)."""
    count = len(arrays)
    maps = arrays[0].shape[0]
    height, head_dim, padded = results[0].shape
    width = (padded - 2 * margin) // maps
    for task in prange(count * height * maps):
        i = task // (height * maps)
        x = (task // maps) % height
        m = task % maps
        source = arrays[i][m, rows[0] + rows[1] * x]
        target = results[i][x]
        factor = factors[i]
        start = margin + m * width
        _zero_margin(target, m, maps, margin)
        for y in range(width):
            pixel = source[cols[0] + cols[1] * y]
            for c in range(head_dim):
                target[c, start + y] = factor * pixel[c]


@njit(cache=True, parallel=True)
def to_tall_columns(arrays, columns, rows, cols, margin, factors, results):
    """The transpose of :func:`to_wide_rows` for a few columns: for each ``a = arrays[i]``, column
    ``columns[i][j]`` of every map side by side, ``results[i][j, c, margin + m*H_g + x] = factors[i] *
    a[m, row_offset + row_step*x, col_offset + col_step*columns[i][j], c]``, and zero margins."""
    count = len(arrays)
    maps = arrays[0].shape[0]
    head_dim, padded = results[0].shape[1], results[0].shape[2]
    height = (padded - 2 * margin) // maps
    widest = 0
    for i in range(count):
        widest = max(widest, columns[i].shape[0])
    for task in prange(count * widest * maps):
        i = task // (widest * maps)
        j = (task // maps) % widest
        m = task % maps
        if j >= columns[i].shape[0]:
            continue
        column = cols[0] + cols[1] * columns[i][j]
        target = results[i][j]
        factor = factors[i]
        start = margin + m * height
        _zero_margin(target, m, maps, margin)
        for x in range(height):
            pixel = arrays[i][m, rows[0] + rows[1] * x, column]
            for c in range(head_dim):
                target[c, start + x] = factor * pixel[c]


@njit(cache=True)
def _zero_margin(wide_row, m, maps, margin):
    """Zero the margin next to map ``m`` of ``wide_row (d, margin + maps*length + margin)``, if it has one."""
    if m == 0:
        wide_row[:, :margin] = 0.0
    if m == maps - 1:
        wide_row[:, wide_row.shape[1] - margin:] = 0.0


@njit(cache=True)
def task_span(task, chunks, maps_per_task, maps, lanes, margin):
    """The :class:`TaskSpan` of task ``task`` of a pass with ``chunks`` tasks per row."""
    first_map = (task % chunks) * maps_per_task
    last_map = min(first_map + maps_per_task, maps)
    return TaskSpan(task // chunks, first_map, last_map, margin + first_map * lanes, (last_map - first_map) * lanes)


@njit(cache=True)
def add_shifted_dots(left, right, start, shift, products):
    """``products[t] += sum_c left[c, start + t] * right[c, start + shift + t]``, four channels per pass."""
    n = products.shape[0]
    head_dim = left.shape[0]
    c = 0
    while c < head_dim:
        if c + 4 <= head_dim:
            a0 = left[c, start:start + n]
            a1 = left[c + 1, start:start + n]
            a2 = left[c + 2, start:start + n]
            a3 = left[c + 3, start:start + n]
            b0 = right[c, start + shift:start + shift + n]
            b1 = right[c + 1, start + shift:start + shift + n]
            b2 = right[c + 2, start + shift:start + shift + n]
            b3 = right[c + 3, start + shift:start + shift + n]
            for t in range(n):
                products[t] += a0[t] * b0[t] + a1[t] * b1[t] + a2[t] * b2[t] + a3[t] * b3[t]
            c += 4
        else:
            a0 = left[c, start:start + n]
            b0 = right[c, start + shift:start + shift + n]
            for t in range(n):
                products[t] += a0[t] * b0[t]
            c += 1


@njit(cache=True)
def add_shifted_products(weights, rows, start, result):
    """``result[c, t] += sum_w weights[w, t] * rows[c, start + w + t]``, four slots per pass."""
    kernel_w, n = weights.shape
    for c in range(rows.shape[0]):
        source = rows[c]
        target = result[c]
        w = 0
        while w < kernel_w:
            if w + 4 <= kernel_w:
                p0 = weights[w]
                p1 = weights[w + 1]
                p2 = weights[w + 2]
                p3 = weights[w + 3]
                b0 = source[start + w:start + w + n]
                b1 = source[start + w + 1:start + w + 1 + n]
                b2 = source[start + w + 2:start + w + 2 + n]
                b3 = source[start + w + 3:start + w + 3 + n]
                for t in range(n):
                    target[t] += p0[t] * b0[t] + p1[t] * b1[t] + p2[t] * b2[t] + p3[t] * b3[t]
                w += 4
            else:
                p0 = weights[w]
                b0 = source[start + w:start + w + n]
                for t in range(n):
                    target[t] += p0[t] * b0[t]
                w += 1


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
        span = task_span(task, chunks, maps_per_task, maps, width, half)
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
                add_shifted_dots(q[i], keys, span.start, w - half, logits)
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
            add_shifted_products(weights[u * lane_kernel:(u + 1) * lane_kernel], v[windows.first[i] + u],
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
        self.corner_axes = (GroupAxis(self.row_bounds.first_key, self.row_bounds.first_bias, self.kernel_h,
                                      row_group, dilation[0]),
                            GroupAxis(self.col_bounds.first_key, self.col_bounds.first_bias, self.kernel_w,
                                      col_group, dilation[1]))

    def wide(self, arrays, factors):
        """Each ``a (B*heads, H, W, d)`` of ``arrays`` -> wide rows ``(rows, d, h + B*heads*cols + h)``,
        times its factor, in scratch arrays; one parallel loop for all."""
        dtype, head_dim = arrays[0].dtype, arrays[0].shape[3]
        shape = (self.rows, head_dim, self.maps * self.cols + 2 * self.margin)
        results = tuple(scratch(f"na2d.{name}", shape, dtype) for name in "qkv")
        to_wide_rows(tuple(arrays), self.rows_at, self.cols_at, self.margin, np.array(factors, dtype), results)
        return results

    def tall(self, arrays, columns, factors):
        """Columns ``columns[i]`` of each ``arrays[i] (B*heads, H, W, d)`` -> tall columns
        ``(len(columns[i]), d, kh//2 + B*heads*rows + kh//2)``, times its factor, in scratch arrays."""
        dtype, head_dim = arrays[0].dtype, arrays[0].shape[3]
        length = self.maps * self.rows + 2 * self.row_margin
        results = tuple(scratch(f"na2d.{name}", (chosen.size, head_dim, length), dtype)
                        for name, chosen in zip("qkv", columns))
        to_tall_columns(tuple(arrays), tuple(columns), self.rows_at, self.cols_at, self.row_margin,
                        np.array(factors, dtype), results)
        return results


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
