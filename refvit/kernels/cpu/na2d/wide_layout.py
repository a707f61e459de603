r"""Layouts and vector loops of the ``wide`` path of ``na2d`` (:mod:`refvit.kernels.cpu.na2d.wide`).

**Wide rows.** One dilation group of ``a (B*heads, H, W, d)``, a ``(rows, cols)`` map per head, is
stored as ``(rows, d, h + B*heads*cols + h)``: row ``x`` of every map side by side (map ``m``,
column ``y`` at position ``h + m*cols + y``), ``h = kw//2`` zero columns at both ends. A task
covers the maps ``[m_0, m_1)``: positions ``start + t`` with ``start = h + m_0 cols`` and
``t < n = (m_1 - m_0) cols`` (:class:`TaskSpan`).

**Tall columns.** The same for a few columns of every map, the lanes along the height.

**Border blocks** (backward). The ``2h`` border columns of each map (``border``: ``0..h-1`` and
``cols-h..cols-1``) have clamped windows; their data is gathered into compact blocks, border
column ``b`` of map ``m`` at index ``i = 2h m + b``: queries ``(rows, 1, d, 2h B heads)`` and keys
``(rows, kw, d, 2h B heads)``, where slot ``w`` of block ``i`` holds the key that border query ``i``
sees in column slot ``w``. Border products are then element-wise along ``i``.

Every loop below runs along ``t`` (or ``i``) from 0, so the compiler sees contiguous loads with no
negative index and vectorises it; the channel or slot loops outside it keep a fixed summation order.
A group's position in the image is given per axis as ``(offset, step)``.

Numba's on-disk cache of the kernels in :mod:`refvit.kernels.cpu.na2d.wide_kernels` does not notice edits
to these helpers: after changing them, delete ``na2d/__pycache__/wide_kernels.*.nb*``.
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


@njit(cache=True, parallel=True)
def to_border_blocks(a, rows_at, cols_at, border, col_first, as_keys, result):
    """``result[x, s, c, i]`` for border column ``y = border[b]`` of map ``m`` (``i = m*len(border) + b``):
    ``a`` at column ``col_first[y] + s`` (keys, ``as_keys``) or at ``y`` (queries, one slot); the group
    sits at ``rows_at, cols_at = (offset, step)``."""
    maps = a.shape[0]
    rows, slots, head_dim, _ = result.shape
    count = border.shape[0]
    for task in prange(rows * maps):
        x = task // maps
        m = task % maps
        source = a[m, rows_at[0] + rows_at[1] * x]
        for b in range(count):
            y = border[b]
            for s in range(slots):
                column = col_first[y] + s if as_keys else y
                pixel = source[cols_at[0] + cols_at[1] * column]
                for c in range(head_dim):
                    result[x, s, c, m * count + b] = pixel[c]


@njit(cache=True)
def shifted_dots(left, right, start, shift, products):
    """``products[t] = sum_c left[c, start + t] * right[c, start + shift + t]``, four channels per pass."""
    products[:] = 0.0
    add_shifted_dots(left, right, start, shift, products)


@njit(cache=True)
def add_block_products(weights, blocks, start, result):
    """``result[c, i] += sum_w weights[w, i] * blocks[w, c, start + i]`` (border blocks)."""
    kernel_w, n = weights.shape
    for c in range(result.shape[0]):
        target = result[c]
        for w in range(kernel_w):
            p = weights[w]
            b = blocks[w, c, start:start + n]
            for i in range(n):
                target[i] += p[i] * b[i]


@njit(cache=True)
def add_outer_products(weights, rows, start, result):
    """``result[w, c, i] += weights[w, i] * rows[c, start + i]`` (border blocks of key gradients)."""
    kernel_w, n = weights.shape
    for w in range(kernel_w):
        p = weights[w]
        for c in range(rows.shape[0]):
            a = rows[c, start:start + n]
            target = result[w, c]
            for i in range(n):
                target[i] += p[i] * a[i]


@njit(cache=True)
def gather_shifted_products(weights, rows, start, cols, border, padded, result):
    """The interior-query part of ``result[c, key_w(t)] += weights[w, t] * rows[c, start + t]`` (the
    transpose of ``add_shifted_products``), as a gather: key ``j`` takes slot ``w`` from query
    ``j - w + h``. The weights, border columns zeroed, go to ``padded (kw, n + 2h)`` at offset ``h``,
    so ``result[c, j] += sum_w padded[w, j - w + 2h] * rows[c, start - h + j - w + 2h]`` runs over
    every ``j`` of the task with no bounds cases."""
    kernel_w, n = weights.shape
    half = kernel_w // 2
    padded[:, :half] = 0.0
    padded[:, half:half + n] = weights
    padded[:, half + n:] = 0.0
    zero_borders(padded[:, half:half + n], cols, border)
    for c in range(rows.shape[0]):
        source = rows[c, start - half:]
        target = result[c]
        w = 0
        while w < kernel_w:
            o = 2 * half - w
            if w + 4 <= kernel_w:
                p0 = padded[w, o:o + n]
                p1 = padded[w + 1, o - 1:o - 1 + n]
                p2 = padded[w + 2, o - 2:o - 2 + n]
                p3 = padded[w + 3, o - 3:o - 3 + n]
                a0 = source[o:o + n]
                a1 = source[o - 1:o - 1 + n]
                a2 = source[o - 2:o - 2 + n]
                a3 = source[o - 3:o - 3 + n]
                for j in range(n):
                    target[j] += p0[j] * a0[j] + p1[j] * a1[j] + p2[j] * a2[j] + p3[j] * a3[j]
                w += 4
            else:
                p0 = padded[w, o:o + n]
                a0 = source[o:o + n]
                for j in range(n):
                    target[j] += p0[j] * a0[j]
                w += 1


@njit(cache=True)
def zero_borders(weights, cols, border):
    """``weights[:, k*cols + y] = 0`` for every map ``k`` of the task and border column ``y``."""
    for k in range(weights.shape[1] // cols):
        for y in border:
            weights[:, k * cols + y] = 0.0


@njit(cache=True)
def _move_borders(wide, compact, cols, border, into_wide):
    """Between ``wide[:, k*cols + border[b]]`` and ``compact[:, k*len(border) + b]`` for every map ``k``
    of the task and border column ``b``: into ``wide`` or out of it."""
    count = border.shape[0]
    if count == 0:  # kernel width 1: no border columns
        return
    for k in range(compact.shape[1] // count):
        for b in range(count):
            if into_wide:
                wide[:, k * cols + border[b]] = compact[:, k * count + b]
            else:
                compact[:, k * count + b] = wide[:, k * cols + border[b]]


@njit(cache=True)
def to_borders(compact, cols, border, wide):
    """``wide[:, k*cols + border[b]] = compact[:, k*len(border) + b]``."""
    _move_borders(wide, compact, cols, border, True)


@njit(cache=True)
def from_borders(wide, cols, border, compact):
    """``compact[:, k*len(border) + b] = wide[:, k*cols + border[b]]``."""
    _move_borders(wide, compact, cols, border, False)


@njit(cache=True)
def from_wide_row(result, first_map, cols, factor, target, cols_at):
    """``target[m, offset + step*y, c] = factor * result[c, (m - first_map)*cols + y]`` for the maps of
    the task, ``cols_at = (offset, step)``; ``target (B*heads, W, d)`` is one row of the global layout."""
    for k in range(result.shape[1] // cols):
        for y in range(cols):
            pixel = target[first_map + k, cols_at[0] + cols_at[1] * y]
            for c in range(pixel.shape[0]):
                pixel[c] = factor * result[c, k * cols + y]


@njit(cache=True)
def add_block_keys(blocks, cols, border, col_first, result):
    """``result[c, k*cols + col_first[y] + w] += blocks[w, c, k*len(border) + b]``, ``y = border[b]``:
    the border queries' key gradients, from their blocks to their keys."""
    kernel_w, head_dim, n = blocks.shape
    count = border.shape[0]
    if count == 0:  # kernel width 1: no border columns
        return
    for c in range(head_dim):
        target = result[c]
        for k in range(n // count):
            for b in range(count):
                key = k * cols + col_first[border[b]]
                for w in range(kernel_w):
                    target[key + w] += blocks[w, c, k * count + b]
