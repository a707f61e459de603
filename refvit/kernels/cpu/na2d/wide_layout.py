r"""Layouts and vector loops of the ``wide`` path of ``na2d`` (:mod:`refvit.kernels.cpu.na2d.wide`).

**Wide rows.** One dilation group of ``a (B*heads, H, W, d)``, a ``(rows, cols)`` map per head, is
stored as ``(rows, d, h + B*heads*cols + h)``: row ``x`` of every map side by side (map ``m``,
column ``y`` at position ``h + m*cols + y``), ``h = kw//2`` zero columns at both ends. A task
covers the maps ``[m_0, m_1)``: positions ``start + t`` with ``start = h + m_0 cols`` and
``t < n = (m_1 - m_0) cols`` (:class:`TaskSpan`).

**Tall columns.** The same for a few columns of every map, the lanes along the height.

Every loop below runs along ``t`` from 0, so the compiler sees contiguous loads with no
negative index and vectorises it; the channel or slot loops outside it keep a fixed summation order.
A group's position in the image is given per axis as ``(offset, step)``.

An edit of these helpers recompiles the kernels of :mod:`refvit.kernels.cpu.na2d.wide_kernels` on the next
import (:mod:`refvit.kernels.cpu._stale_cache`; Numba's own cache would not notice it).
"""
from typing import NamedTuple

from numba import njit, prange


class TaskSpan(NamedTuple):
    """A task of a wide-row kernel: its ``row``, its maps ``[first_map, last_map)`` and their lanes,
    positions ``start .. start + n`` of the wide row."""
    row: int
    first_map: int
    last_map: int
    start: int
    n: int


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

