r"""2-D neighbourhood attention on the CPU, vectorised along the width (stride 1, no causal mask).

The general kernels of :mod:`refvit.kernels.cpu.na2d` take one query at a time; their dot products
over the head dimension are reductions that the compiler does not vectorise without reordering sums
(and there is no ``fastmath`` here). This path turns the work around so every inner loop runs along
the *width*, where the lanes are independent queries:

* **one dilation group at a time.** Query ``(x, y)`` of group ``(g_h, g_w)`` sits at
  ``(g_h + \delta_h x, g_w + \delta_w y)`` and only sees keys of its own group, where the window rule
  is the one of dilation 1 on the group's ``(H_g, W_g)`` map.
* **wide transposed rows.** ``q, k, v`` (and ``dout``, ``out``) of a group are copied to
  ``(H_g, d, h + B*heads*W_g + h)``, ``h = k_w//2``: map row ``x`` of every map side by side along
  the last axis (map ``m``, column ``y`` at position ``h + m W_g + y``), with ``h`` zero columns at
  both ends. The row window depends on ``x`` only, so one loop covers the same row of all maps.
* **shifted rows.** With stride 1 and no causal mask an interior column ``y``
  (``h <= y < W_g - h``) has window start ``y - h``: slot ``w`` holds the key ``y + w - h``, and the
  logits of slot ``(u, w)`` (key row ``r_u``) of a whole wide row are

  .. math::  a_{x,uw}[t] = \sum_c q_x[c, t]\; k_{r_u}[c,\, t + w - h]

  a sum over ``c`` of element-wise products of two shifted rows. The loop over ``t`` has no
  dependence between lanes and vectorises, each lane still summing over ``c`` in a fixed order.
* **border blocks.** The ``h`` border columns on each side of every map have clamped windows. Their
  queries, and for each column slot the keys (values) they see, are gathered once per group into
  compact blocks where the products are element-wise along the blocks (see
  :mod:`refvit.kernels.cpu.na2d_wide_rows`); their results overwrite the border lanes of the shifted
  products, and their weights are zeroed before the shifted weighted sums.
* **softmax** per lane along the row, with :func:`refvit.kernels.cpu.na2d_wide_rows.exp_minus`, an
  exponential written as vectorisable arithmetic (``math.exp`` is a call per element).

Kernels, ``prange`` over (row, chunk of maps) of one group:

* ``_forward_rows``: logits of all ``kh*kw`` slots, the softmax per lane, and ``out``; the softmax
  weights go to ``attn (B*heads, H, W, kh*kw)`` exactly as the general kernels store them, so either
  path's backward can read either path's cache.
* ``_backward_query_rows``: :math:`\bar a = p(\delta - g\cdot o)` and :math:`\partial L/\partial q`;
  keeps ``p`` and :math:`\bar a` in the wide layout for the key pass, and sums :math:`\bar a` by bias
  index into per-(map, row) partials.
* ``_backward_key_rows``: per key row, over the query rows whose row window holds it (the inverse
  row table), ``dk`` and ``dv`` as gathers: key ``j`` takes slot ``w`` from interior query
  ``j - w + h``. Each key row has one writer: no races and no atomics.

Everything runs in the input dtype; the bias partials are float64. Numba's on-disk cache of a kernel
here does not notice edits to the helpers in ``na2d_wide_rows``: after changing those, delete this
module's cache files (``__pycache__/na2d_transposed.*.nb*``).
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu import na2d_wide_rows as wide
from refvit.ops._neighborhood import axis_bounds, axis_windows, inverse_windows

TARGET_ROW_LENGTH = 256  # maps per task: enough that a wide row holds about this many columns


def applies(options):
    """Whether this path computes a call with these options: stride 1 and no causal mask on both axes."""
    return all(s == 1 for s in options.stride) and not any(options.is_causal)


@njit(cache=True)
def _add_bias(logits, rpb, heads, first_map, bias_row_index, slot_w, cols, border, col_bias):
    """``logits[k*cols + y] += rpb[head of map first_map + k, bias_row_index, col_bias(y) + slot_w]``;
    inside, ``col_bias(y) = h``."""
    half = border.shape[0] // 2
    for k in range(logits.shape[0] // cols):
        bias_row = rpb[(first_map + k) % heads, bias_row_index]
        segment = logits[k * cols:(k + 1) * cols]
        inner_bias = bias_row[half + slot_w]
        for y in range(half, cols - half):
            segment[y] += inner_bias
        for y in border:
            segment[y] += bias_row[col_bias[y] + slot_w]


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
def _forward_rows(q, k, v, query_blocks, key_blocks, value_blocks, rpb, heads, scale, row_first, row_bias, col_bias,
                  exp_constants, exp_bits, border, kernel_h, kernel_w, cols, maps_per_task, row_group, row_step,
                  col_group, col_step, out, attn):
    """``q, k, v`` in wide rows and border blocks; ``out (B*heads, H, W, d)``, ``attn (B*heads, H, W, kh*kw)``."""
    rows, head_dim = q.shape[0], q.shape[1]
    maps = out.shape[0]
    half = kernel_w // 2
    slots = kernel_h * kernel_w
    chunks = (maps + maps_per_task - 1) // maps_per_task
    has_rpb = rpb.shape[1] > 0
    for task in prange(rows * chunks):
        x = task // chunks
        first_map = (task % chunks) * maps_per_task
        last_map = min(first_map + maps_per_task, maps)
        start = half + first_map * cols
        n = (last_map - first_map) * cols
        border_start = first_map * 2 * half
        border_n = (last_map - first_map) * 2 * half
        probs = np.empty((slots, n), dtype=q.dtype)
        border_probs = np.empty((slots, border_n), dtype=q.dtype)
        for u in range(kernel_h):
            key_row = row_first[x] + u
            for w in range(kernel_w):
                slot = u * kernel_w + w
                wide.shifted_dots(q[x], k[key_row], start, w - half, probs[slot])
                wide.shifted_dots(query_blocks[x, 0], key_blocks[key_row, w], border_start, 0, border_probs[slot])
        wide.to_borders(border_probs, cols, border, probs)
        for u in range(kernel_h):
            for w in range(kernel_w):
                logits = probs[u * kernel_w + w]
                for t in range(n):
                    logits[t] *= scale
                if has_rpb:
                    _add_bias(logits, rpb, heads, first_map, row_bias[x] + u, w, cols, border, col_bias)
        largest = probs[0].copy()
        for slot in range(1, slots):
            for t in range(n):
                largest[t] = max(largest[t], probs[slot, t])
        total = np.zeros(n, dtype=q.dtype)
        shifts = np.empty(n, dtype=q.dtype)
        bits = np.empty(n, dtype=exp_bits.dtype)
        for slot in range(slots):
            shifts[:] = largest
            wide.exp_minus(probs[slot], shifts, total, bits, exp_constants)
        for t in range(n):
            total[t] = 1.0 / total[t]
        for slot in range(slots):
            for t in range(n):
                probs[slot, t] *= total[t]
        for m in range(first_map, last_map):
            attn_row = attn[m, row_group + row_step * x]
            for y in range(cols):
                weights = attn_row[col_group + col_step * y]
                for slot in range(slots):
                    weights[slot] = probs[slot, (m - first_map) * cols + y]
        wide.from_borders(probs, cols, border, border_probs)
        inner_probs = probs.copy()
        wide.zero_borders(inner_probs, cols, border)
        result = np.zeros((head_dim, n), dtype=q.dtype)
        border_result = np.zeros((head_dim, border_n), dtype=q.dtype)
        for u in range(kernel_h):
            row_slots = slice(u * kernel_w, (u + 1) * kernel_w)
            key_row = row_first[x] + u
            wide.add_shifted_products(inner_probs[row_slots], v[key_row], start - half, result)
            wide.add_block_products(border_probs[row_slots], value_blocks[key_row], border_start, border_result)
        wide.to_borders(border_result, cols, border, result)
        wide.from_wide_row(result, first_map, cols, 1.0, out[:, row_group + row_step * x], col_group, col_step)


@njit(cache=True, parallel=True)
def _backward_query_rows(dout, out, k, v, dout_blocks, key_blocks, value_blocks, attn, scale, row_first, row_bias,
                         col_bias, border, kernel_h, kernel_w, cols, maps_per_task, row_group, row_step, col_group,
                         col_step, probs_wide, dlogits_wide, dq, bias_partials):
    """``probs_wide, dlogits_wide (H_g, kh*kw, h + B*heads*W_g + h)`` receive ``p`` and :math:`\\bar a`;
    ``dq`` is in the global layout; ``bias_partials[m, x]`` sums :math:`\\bar a` of row ``x`` of map
    ``m`` by bias index (skipped when it has no rows)."""
    rows, head_dim = k.shape[0], k.shape[1]
    maps = dq.shape[0]
    half = kernel_w // 2
    slots = kernel_h * kernel_w
    chunks = (maps + maps_per_task - 1) // maps_per_task
    has_rpb = bias_partials.shape[0] > 0
    for task in prange(rows * chunks):
        x = task // chunks
        first_map = (task % chunks) * maps_per_task
        last_map = min(first_map + maps_per_task, maps)
        start = half + first_map * cols
        n = (last_map - first_map) * cols
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
            attn_row = attn[m, row_group + row_step * x]
            for y in range(cols):
                weights = attn_row[col_group + col_step * y]
                for slot in range(slots):
                    probs[slot, (m - first_map) * cols + y] = weights[slot]
        dlogits = np.empty((slots, n), dtype=k.dtype)
        border_dlogits = np.empty((slots, border_n), dtype=k.dtype)
        for u in range(kernel_h):
            key_row = row_first[x] + u
            for w in range(kernel_w):
                slot = u * kernel_w + w
                wide.shifted_dots(dout[x], v[key_row], start, w - half, dlogits[slot])
                wide.shifted_dots(dout_blocks[x, 0], value_blocks[key_row, w], border_start, 0, border_dlogits[slot])
        wide.to_borders(border_dlogits, cols, border, dlogits)
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
        wide.from_borders(dlogits, cols, border, border_dlogits)
        wide.zero_borders(dlogits, cols, border)
        result = np.zeros((head_dim, n), dtype=k.dtype)
        border_result = np.zeros((head_dim, border_n), dtype=k.dtype)
        for u in range(kernel_h):
            row_slots = slice(u * kernel_w, (u + 1) * kernel_w)
            key_row = row_first[x] + u
            wide.add_shifted_products(dlogits[row_slots], k[key_row], start - half, result)
            wide.add_block_products(border_dlogits[row_slots], key_blocks[key_row], border_start, border_result)
        wide.to_borders(border_result, cols, border, result)
        wide.from_wide_row(result, first_map, cols, scale, dq[:, row_group + row_step * x], col_group, col_step)


@njit(cache=True, parallel=True)
def _backward_key_rows(q, dout, query_blocks, dout_blocks, probs_wide, dlogits_wide, scale, row_queries, row_slots,
                       row_count, col_first, border, kernel_w, cols, maps_per_task, row_group, row_step, col_group,
                       col_step, dk, dv):
    rows, head_dim = q.shape[0], q.shape[1]
    maps = dk.shape[0]
    half = kernel_w // 2
    chunks = (maps + maps_per_task - 1) // maps_per_task
    for task in prange(rows * chunks):
        key_row = task // chunks
        first_map = (task % chunks) * maps_per_task
        last_map = min(first_map + maps_per_task, maps)
        start = half + first_map * cols
        n = (last_map - first_map) * cols
        border_start = first_map * 2 * half
        border_n = (last_map - first_map) * 2 * half
        grad_k = np.zeros((head_dim, n), dtype=q.dtype)
        grad_v = np.zeros((head_dim, n), dtype=q.dtype)
        border_k = np.zeros((kernel_w, head_dim, border_n), dtype=q.dtype)
        border_v = np.zeros((kernel_w, head_dim, border_n), dtype=q.dtype)
        padded = np.empty((kernel_w, n + 2 * half), dtype=q.dtype)
        compact = np.empty((kernel_w, border_n), dtype=q.dtype)
        for a in range(row_count[key_row]):
            x = row_queries[key_row, a]
            slots = slice(row_slots[key_row, a] * kernel_w, (row_slots[key_row, a] + 1) * kernel_w)
            dlogits = dlogits_wide[x, slots, start:start + n]
            wide.gather_shifted_products(dlogits, q[x], start, cols, border, padded, grad_k)
            wide.from_borders(dlogits, cols, border, compact)
            wide.add_outer_products(compact, query_blocks[x, 0], border_start, border_k)
            probs = probs_wide[x, slots, start:start + n]
            wide.gather_shifted_products(probs, dout[x], start, cols, border, padded, grad_v)
            wide.from_borders(probs, cols, border, compact)
            wide.add_outer_products(compact, dout_blocks[x, 0], border_start, border_v)
        wide.add_block_keys(border_k, cols, border, col_first, grad_k)
        wide.add_block_keys(border_v, cols, border, col_first, grad_v)
        wide.from_wide_row(grad_k, first_map, cols, scale, dk[:, row_group + row_step * key_row], col_group, col_step)
        wide.from_wide_row(grad_v, first_map, cols, 1.0, dv[:, row_group + row_step * key_row], col_group, col_step)


class _Group:
    """One dilation group: its offsets, map size, window tables (dilation 1) and layouts."""

    def __init__(self, row_group, col_group, height, width, maps, options):
        self.row_group, self.col_group = row_group, col_group
        self.row_step, self.col_step = options.dilation
        self.rows = len(range(row_group, height, self.row_step))
        self.cols = len(range(col_group, width, self.col_step))
        self.maps = maps
        self.kernel_w = options.kernel_size[1]
        self.row_bounds = axis_bounds(self.rows, options.kernel_size[0])
        self.col_bounds = axis_bounds(self.cols, self.kernel_w)
        self.margin = self.kernel_w // 2
        self.border = np.concatenate((np.arange(self.margin), np.arange(self.cols - self.margin, self.cols)))
        self.maps_per_task = max(1, min(maps, -(-TARGET_ROW_LENGTH // self.cols)))

    def wide(self, a):
        """``a (B*heads, H, W, d)`` -> wide rows ``(rows, d, h + B*heads*cols + h)``."""
        result = np.empty((self.rows, a.shape[3], self.maps * self.cols + 2 * self.margin), a.dtype)
        wide.zero_margins(result, self.margin)
        wide.to_wide_rows(a, self.row_group, self.row_step, self.col_group, self.col_step, self.margin, result)
        return result

    def blocks(self, a, as_keys):
        """Border blocks of ``a``: ``(rows, kw if as_keys else 1, d, 2h B heads)``."""
        slots = self.kernel_w if as_keys else 1
        result = np.empty((self.rows, slots, a.shape[3], self.maps * self.border.size), a.dtype)
        wide.to_border_blocks(a, self.row_group, self.row_step, self.col_group, self.col_step, self.border,
                              self.col_bounds.first_key, as_keys, result)
        return result

    def placement(self):
        return (self.border, self.kernel_w, self.cols, self.maps_per_task, self.row_group, self.row_step,
                self.col_group, self.col_step)


def _groups(height, width, maps, options):
    return [_Group(row_group, col_group, height, width, maps, options)
            for row_group in range(options.dilation[0]) for col_group in range(options.dilation[1])]


def _flat(a):
    batch, heads = a.shape[:2]
    return np.ascontiguousarray(a).reshape((batch * heads,) + a.shape[2:])


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> ``(out, attn)``,
    ``attn (B, heads, H, W, kh*kw)``; requires :func:`applies`."""
    batch, heads, height, width, head_dim = q.shape
    kernel_h = options.kernel_size[0]
    scale = q.dtype.type(options.scale)
    bias = np.zeros((heads, 0, 0), q.dtype) if rpb is None else np.ascontiguousarray(rpb)
    q, k, v = (_flat(a) for a in (q, k, v))
    out = np.empty_like(q)
    attn = np.empty(q.shape[:3] + (kernel_h * options.kernel_size[1],), q.dtype)
    for group in _groups(height, width, q.shape[0], options):
        _forward_rows(group.wide(q), group.wide(k), group.wide(v), group.blocks(q, False), group.blocks(k, True),
                      group.blocks(v, True), bias, heads, scale, group.row_bounds.first_key,
                      group.row_bounds.first_bias, group.col_bounds.first_bias, wide.exp_constants(q.dtype),
                      np.empty(0, np.int64 if q.dtype == np.float64 else np.int32), group.border, kernel_h,
                      *group.placement()[1:], out, attn)
    return out.reshape((batch, heads, height, width, head_dim)), attn.reshape((batch, heads, height, width, -1))


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None; requires :func:`applies`."""
    batch, heads, height, width, head_dim = q.shape
    kernel_h, kernel_w = options.kernel_size
    scale = q.dtype.type(options.scale)
    dout, q, k, v, out, attn = (_flat(a) for a in (dout, q, k, v, out, attn))
    maps = q.shape[0]
    dq, dk, dv = (np.empty_like(q) for _ in range(3))
    drpb = None if rpb is None else np.zeros(rpb.shape, np.float64)
    for group in _groups(height, width, maps, options):
        wide_dout, dout_blocks = group.wide(dout), group.blocks(dout, False)
        wide_shape = (group.rows, kernel_h * kernel_w, maps * group.cols + 2 * group.margin)
        probs_wide, dlogits_wide = np.empty(wide_shape, q.dtype), np.empty(wide_shape, q.dtype)
        bias_shape = (0, 0, 0, 0) if rpb is None else (maps, group.rows) + tuple(rpb.shape[1:])
        bias_partials = np.zeros(bias_shape, np.float64)
        _backward_query_rows(wide_dout, group.wide(out), group.wide(k), group.wide(v), dout_blocks,
                             group.blocks(k, True), group.blocks(v, True), attn, scale, group.row_bounds.first_key,
                             group.row_bounds.first_bias, group.col_bounds.first_bias, group.border, kernel_h,
                             *group.placement()[1:], probs_wide, dlogits_wide, dq, bias_partials)
        row_inverse = inverse_windows(axis_windows(group.rows, kernel_h))
        _backward_key_rows(group.wide(q), wide_dout, group.blocks(q, False), dout_blocks, probs_wide, dlogits_wide,
                           scale, row_inverse.queries, row_inverse.slots, row_inverse.count,
                           group.col_bounds.first_key, *group.placement(), dk, dv)
        if rpb is not None:
            drpb += bias_partials.reshape((batch, heads, group.rows) + tuple(rpb.shape[1:])).sum(axis=(0, 2))
    shape = (batch, heads, height, width, head_dim)
    return (dq.reshape(shape), dk.reshape(shape), dv.reshape(shape),
            None if drpb is None else drpb.astype(q.dtype))
