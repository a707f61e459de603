r"""The backward kernels of the width-vectorised ``na2d`` path (:mod:`refvit.kernels.cpu.na2d_transposed`).

``backward_query_rows``: :math:`\bar a = p(\delta - g\cdot o)` and :math:`\partial L/\partial q`; keeps ``p``
and :math:`\bar a` in the wide layout for the key pass, and sums :math:`\bar a` by bias index into
per-(map, row) partials. ``backward_key_rows``: per key row, over the query rows whose row window
holds it (the inverse row table), ``dk`` and ``dv`` as gathers: key ``j`` takes slot ``w`` from interior
query ``j - w + h``. Each key row has one writer: no races and no atomics. Border columns go through
compact border blocks.

Numba's on-disk cache of these kernels does not notice edits to the helpers in ``na2d_wide_rows``:
after changing those, delete this module's cache files (``__pycache__/na2d_wide_backward.*.nb*``).
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu import na2d_wide_rows as wide


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
def backward_query_rows(dout, out, k, v, dout_blocks, key_blocks, value_blocks, attn, scale, row_first, row_bias,
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
        x, first_map, last_map, start, n = wide.task_span(task, chunks, maps_per_task, maps, cols, half)
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
def backward_key_rows(q, dout, query_blocks, dout_blocks, probs_wide, dlogits_wide, scale, row_queries, row_slots,
                       row_count, col_first, border, kernel_w, cols, maps_per_task, row_group, row_step, col_group,
                       col_step, dk, dv):
    rows, head_dim = q.shape[0], q.shape[1]
    maps = dk.shape[0]
    half = kernel_w // 2
    chunks = (maps + maps_per_task - 1) // maps_per_task
    for task in prange(rows * chunks):
        key_row, first_map, last_map, start, n = wide.task_span(task, chunks, maps_per_task, maps, cols, half)
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
