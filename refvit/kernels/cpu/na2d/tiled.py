r"""The *tiled* path of ``na2d`` on the CPU: the logits of a tile of queries by one ``gemm`` against the
keys its windows hold.

A *tile* is up to ``TILE`` queries of one query row ``x`` and one column dilation group, ``C``
consecutive queries of the group. Their windows hold the key rows of ``x``'s row window (the
same for the whole tile) and a band of the group's columns, at most ``C + kw - 1`` wide (windows of
neighbouring queries start at neighbouring columns, stride and causal windows included). Per tile
the queries are copied to ``Q_t (C, d)`` and the band's keys and values to ``K_b, V_b
(n_b, d)``, ``n_b = rows x band columns``; then

* forward: :math:`S = Q_t K_b^\top` (``gemm``); the window's logits are picked out of ``S`` (scale, bias),
  the softmax over the valid slots (one float64 pass of
  :func:`refvit.kernels.cpu.vector_math.exp_shifted` per tile, ``exp_shifted_for_float32`` for float32),
  the weights written to ``attn`` and into a zeroed ``P (C, n_b)``, and :math:`O_t = P V_b` (``gemm``);
* backward: :math:`D = \partial O_t V_b^\top` gives :math:`\partial p_{it} = D_{i j_{it}}`;
  :math:`\bar a_{it} = p_{it}(\partial p_{it} - \partial o_i \cdot o_i)` scaled into a zeroed
  ``A (C, n_b)``; :math:`\partial Q_t = A K_b`, :math:`\partial K_b = A^\top Q_t`,
  :math:`\partial V_b = P^\top \partial O_t` (four ``gemm`` calls), the last two added onto the band's
  keys.

The ``gemm`` computes ``n_b / (kh kw)`` products per useful one (about ``(C + kw - 1) / kw``), but
at the BLAS rate rather than one in-order dot product per logit; the copies are a ``d``-th of the
products. The forward runs one ``prange`` iteration per (map, query row) and writes only that
row's ``out`` and ``attn``; the backward runs one per map (its tiles add onto shared keys), the
bias gradient summed per map into a float64 table and over maps in order afterwards. The
``np.dot`` calls run on one BLAS thread (the thread rule of :mod:`refvit.kernels.cpu._threads`).
Memory: the tile buffers, ``O(C (C + kw) kh)`` per thread; ``attn`` is stored as the other paths
store it, so any path's backward reads any path's forward.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.na2d.general import _axes, _flat, _windows
from refvit.kernels.cpu.vector_math import exp_shifted, exp_shifted_for_float32

# Queries per tile: wider tiles waste fewer products on the band's edges but compute more that no
# window holds (figures in the dispatch module).
TILE = 16


@njit(cache=True)
def _band(cols, y0, count):
    """First column and width (in group columns) of the key band of ``count`` queries from ``y0``."""
    col_first, col_count, _, step = cols
    last = col_first[y0]
    for j in range(count):
        y = y0 + step * j
        last = max(last, col_first[y] + step * (col_count[y] - 1))
    return col_first[y0], (last - col_first[y0]) // step + 1


@njit(cache=True)
def _copy_queries(rows, y0, step, count, dst):
    """``dst[j] = rows[y0 + step*j]`` for ``j < count``."""
    for j in range(count):
        dst[j] = rows[y0 + step * j]


@njit(cache=True)
def _tiles(cols, width):
    """The column tiles of a map, dilation group by group: per tile its first query column, query
    count, and the first column and width (in group columns) of its key band."""
    step = cols[3]
    total = 0
    for group in range(min(step, width)):
        total += ((width - group + step - 1) // step + TILE - 1) // TILE
    tiles = np.empty((total, 4), np.int64)
    i = 0
    for group in range(min(step, width)):
        group_cols = (width - group + step - 1) // step
        for j0 in range(0, group_cols, TILE):
            count = min(TILE, group_cols - j0)
            y0 = group + step * j0
            first_col, band = _band(cols, y0, count)
            tiles[i, 0], tiles[i, 1], tiles[i, 2], tiles[i, 3] = y0, count, first_col, band
            i += 1
    return tiles


@njit(cache=True)
def _copy_strip(plane, row_group, row_step, first_col, col_step, band, dst):
    """``dst[i*band + c] = plane[row_group + row_step*i, first_col + col_step*c]`` for every row ``i`` of
    the row dilation group: the band's columns of the whole map height, so that the band of any query
    row of the group is the contiguous block ``dst[i0*band:(i0 + rows)*band]``."""
    head_dim = plane.shape[2]
    i = 0
    for r in range(row_group, plane.shape[0], row_step):
        for c in range(band):
            col = first_col + col_step * c
            for e in range(head_dim):
                dst[i * band + c, e] = plane[r, col, e]
        i += 1


@njit(cache=True)
def _add_strip(src, row_group, row_step, first_col, col_step, band, plane):
    """The inverse of :func:`_copy_strip`, adding: ``plane[row_group + row_step*i, first_col +
    col_step*c] += src[i*band + c]``."""
    head_dim = plane.shape[2]
    i = 0
    for r in range(row_group, plane.shape[0], row_step):
        for c in range(band):
            col = first_col + col_step * c
            for e in range(head_dim):
                plane[r, col, e] += src[i * band + c, e]
        i += 1


@njit(cache=True)
def _add_into(src, dst):
    """``dst += src``, both ``(n, d)``."""
    for i in range(src.shape[0]):
        for e in range(src.shape[1]):
            dst[i, e] += src[i, e]


@njit(cache=True, parallel=True, error_model="numpy")
def _forward(q, k, v, rpb, heads, scale, rows, cols, kernel, out, attn):
    """``q, k, v, out (maps, H, W, d)``, ``attn (maps, H, W, kh*kw)``, ``rpb (heads, 2kh-1, 2kw-1)``
    (0 rows: none), ``rows, cols``: :class:`refvit.kernels.cpu.na2d.general.SteppedBounds`, ``kernel = (kh, kw)``.

    One ``prange`` task per (map, column tile, row dilation group): the band's keys and values of the
    whole group are copied once (a *strip*), and every query row of the group takes its band from it."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    kernel_h, kernel_w = kernel
    maps, height, width, head_dim = q.shape
    slots = kernel_h * kernel_w
    has_rpb = rpb.shape[1] > 0
    tiles = _tiles(cols, width)
    widest = 0
    for i in range(tiles.shape[0]):
        widest = max(widest, tiles[i, 3])
    row_groups = min(row_step, height)
    strip_rows = (height + row_step - 1) // row_step
    per_map = tiles.shape[0] * row_groups
    for task in prange(maps * per_map):
        m = task // per_map
        tile = (task % per_map) // row_groups
        row_group = task % row_groups
        head = m % heads
        y0, count, first_col, band = tiles[tile, 0], tiles[tile, 1], tiles[tile, 2], tiles[tile, 3]
        queries = np.empty((TILE, head_dim), q.dtype)
        keys = np.empty((strip_rows * widest, head_dim), q.dtype)
        values = np.empty((strip_rows * widest, head_dim), q.dtype)
        weights = np.empty(TILE * kernel_h * widest, q.dtype)
        logits = np.empty(TILE * slots)
        powers = np.empty(TILE * slots)
        _copy_strip(k[m], row_group, row_step, first_col, col_step, band, keys)
        _copy_strip(v[m], row_group, row_step, first_col, col_step, band, values)
        for x in range(height):
            if row_first[x] % row_step != row_group:
                continue
            used_rows = row_count[x]
            n_b = used_rows * band
            lo = (row_first[x] - row_group) // row_step * band
            _copy_queries(q[m, x], y0, col_step, count, queries)
            products = np.dot(queries[:count], keys[lo:lo + n_b].T)
            for j in range(count):
                y = y0 + col_step * j
                offset = (col_first[y] - first_col) // col_step
                row = logits[j * slots:(j + 1) * slots]
                row[:] = -np.inf
                largest = -np.inf
                for u in range(used_rows):
                    for w in range(col_count[y]):
                        logit = scale * products[j, u * band + offset + w]
                        if has_rpb:
                            logit += rpb[head, row_bias[x] + u, col_bias[y] + w]
                        row[u * kernel_w + w] = logit
                        largest = max(largest, row[u * kernel_w + w])
                for t in range(slots):
                    row[t] -= largest
            if out.itemsize == 4:  # float32 results: the cheaper polynomial is exact enough
                exp_shifted_for_float32(logits[:count * slots], 0.0, powers)
            else:
                exp_shifted(logits[:count * slots], 0.0, powers)
            dense = weights[:count * n_b].reshape((count, n_b))
            dense[:] = 0.0
            for j in range(count):
                y = y0 + col_step * j
                offset = (col_first[y] - first_col) // col_step
                row = logits[j * slots:(j + 1) * slots]
                total = 0.0
                for t in range(slots):
                    total += row[t]
                probs = attn[m, x, y]
                for t in range(slots):
                    probs[t] = row[t] / total
                for u in range(used_rows):
                    for w in range(col_count[y]):
                        dense[j, u * band + offset + w] = probs[u * kernel_w + w]
            result = np.dot(dense, values[lo:lo + n_b])
            for j in range(count):
                out[m, x, y0 + col_step * j] = result[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _backward(dout, q, k, v, out, attn, scale, rows, cols, kernel, grads, bias_partials):
    """Gradients ``grads = (dq, dk, dv)`` of one map per ``prange`` iteration; ``bias_partials (maps,
    2kh-1, 2kw-1)`` float64 (0 maps: none). Per (column tile, row dilation group) the keys and values
    of the band are copied to strips once, and ``dk``, ``dv`` of the band summed in strips that are
    added onto the map after the group's last query row."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    kernel_h, kernel_w = kernel
    maps, height, width, head_dim = q.shape
    has_rpb = bias_partials.shape[0] > 0
    dq, dk, dv = grads
    tiles = _tiles(cols, width)
    widest = 0
    for i in range(tiles.shape[0]):
        widest = max(widest, tiles[i, 3])
    strip_rows = (height + row_step - 1) // row_step
    strip = strip_rows * widest
    for m in prange(maps):
        dk[m] = 0.0
        dv[m] = 0.0
        queries = np.empty((TILE, head_dim), q.dtype)
        grad_rows = np.empty((TILE, head_dim), q.dtype)
        keys = np.empty((strip, head_dim), q.dtype)
        values = np.empty((strip, head_dim), q.dtype)
        key_grads = np.empty((strip, head_dim), q.dtype)
        value_grads = np.empty((strip, head_dim), q.dtype)
        weights = np.empty(TILE * kernel_h * widest, q.dtype)
        scaled = np.empty(TILE * kernel_h * widest, q.dtype)
        for tile in range(tiles.shape[0]):
            y0, count, first_col, band = tiles[tile, 0], tiles[tile, 1], tiles[tile, 2], tiles[tile, 3]
            for row_group in range(min(row_step, height)):
                _copy_strip(k[m], row_group, row_step, first_col, col_step, band, keys)
                _copy_strip(v[m], row_group, row_step, first_col, col_step, band, values)
                key_grads[:] = 0.0
                value_grads[:] = 0.0
                for x in range(height):
                    if row_first[x] % row_step != row_group:
                        continue
                    used_rows = row_count[x]
                    n_b = used_rows * band
                    lo = (row_first[x] - row_group) // row_step * band
                    _copy_queries(q[m, x], y0, col_step, count, queries)
                    _copy_queries(dout[m, x], y0, col_step, count, grad_rows)
                    dprobs = np.dot(grad_rows[:count], values[lo:lo + n_b].T)
                    p_dense = weights[:count * n_b].reshape((count, n_b))
                    a_dense = scaled[:count * n_b].reshape((count, n_b))
                    p_dense[:] = 0.0
                    a_dense[:] = 0.0
                    for j in range(count):
                        y = y0 + col_step * j
                        offset = (col_first[y] - first_col) // col_step
                        grad_dot_out = 0.0
                        for c in range(head_dim):
                            grad_dot_out += grad_rows[j, c] * out[m, x, y, c]
                        for u in range(used_rows):
                            for w in range(col_count[y]):
                                index = u * band + offset + w
                                p = attn[m, x, y, u * kernel_w + w]
                                dlogit = p * (dprobs[j, index] - grad_dot_out)
                                if has_rpb:
                                    bias_partials[m, row_bias[x] + u, col_bias[y] + w] += dlogit
                                p_dense[j, index] = p
                                a_dense[j, index] = scale * dlogit
                    result = np.dot(a_dense, keys[lo:lo + n_b])
                    for j in range(count):
                        dq[m, x, y0 + col_step * j] = result[j]
                    _add_into(np.dot(a_dense.T, queries[:count]), key_grads[lo:lo + n_b])
                    _add_into(np.dot(p_dense.T, grad_rows[:count]), value_grads[lo:lo + n_b])
                _add_strip(key_grads, row_group, row_step, first_col, col_step, band, dk[m])
                _add_strip(value_grads, row_group, row_step, first_col, col_step, band, dv[m])


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> ``(out, attn)``,
    ``attn (B, heads, H, W, kh*kw)``."""
    batch, heads, height, width, head_dim = q.shape
    rows, cols = (_windows(axis) for axis in _axes(height, width, options))
    kernel_h, kernel_w = options.kernel_size
    bias = np.zeros((heads, 0, 0), q.dtype) if rpb is None else np.ascontiguousarray(rpb)
    out = np.empty((batch * heads, height, width, head_dim), q.dtype)
    attn = np.empty((batch * heads, height, width, kernel_h * kernel_w), q.dtype)
    _forward(_flat(q), _flat(k), _flat(v), bias, heads, q.dtype.type(options.scale), rows, cols,
             (kernel_h, kernel_w), out, attn)
    return out.reshape(q.shape), attn.reshape((batch, heads, height, width, kernel_h * kernel_w))


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None; ``attn`` from any path."""
    batch, heads, height, width, head_dim = q.shape
    rows, cols = (_windows(axis) for axis in _axes(height, width, options))
    dout, q, k, v, out, attn = (_flat(a) for a in (dout, q, k, v, out, attn))
    grads = tuple(np.empty_like(q) for _ in range(3))
    bias_shape = (0, 0, 0) if rpb is None else (batch * heads,) + tuple(rpb.shape[1:])
    bias_partials = np.zeros(bias_shape, np.float64)
    _backward(dout, q, k, v, out, attn, q.dtype.type(options.scale), rows, cols, tuple(options.kernel_size),
              grads, bias_partials)
    drpb = None
    if rpb is not None:
        drpb = bias_partials.reshape((batch, heads) + tuple(rpb.shape[1:])).sum(axis=0).astype(q.dtype)
    shape = (batch, heads, height, width, head_dim)
    return tuple(g.reshape(shape) for g in grads) + (drpb,)
