"""The forward kernels of the width-vectorised ``na2d`` path (:mod:`refvit.kernels.cpu.na2d_transposed`).

``forward_rows``: ``prange`` over (row, chunk of maps) of one dilation group's wide rows (or, run on
the transposed problem, its tall columns): the logits of all ``kh*kw`` slots as shifted dot products
starting from the bias, the softmax per lane, and ``out``; the weights go to ``attn (B*heads, H, W,
kh*kw)`` exactly as the other paths store them. ``forward_corners``: ``prange`` over (map, corner), the
queries on both a border row and a border column, which share one window per corner.

Numba's on-disk cache of these kernels does not notice edits to the helpers in ``na2d_wide_rows``:
after changing those, delete this module's cache files (``__pycache__/na2d_wide_forward.*.nb*``).
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu import na2d_wide_rows as wide


@njit(cache=True, parallel=True, error_model="numpy")
def forward_rows(q, k, v, rpb, heads, key_first, bias_first, targets, lane_pixels, map_pixels, row_kernel,
                  lane_kernel, row_slot_step, lane_slot_step, maps_per_task, exp_constants, exp_bits, out, attn):
    """The interior lanes of wide rows: ``q (rows, d, h + maps*lanes + h)`` (already scaled), ``k, v (key
    rows, d, same)``, ``h = lane_kernel // 2``; row ``i`` sees the key rows ``key_first[i] + u``
    (``u < row_kernel``) with the bias rows ``bias_first[i] + u`` of ``rpb (heads, 2 row_kernel - 1,
    2 lane_kernel - 1)``.

    Lane ``y`` of map ``m`` in row ``i`` is the query at pixel ``m*map_pixels + targets[i] + lane_pixels[y]``
    of ``out (pixels, d)`` and ``attn (pixels, row_kernel*lane_kernel)``, slot ``(u, w)`` at
    ``u*row_slot_step + w*lane_slot_step``. Only the lanes ``h <= y < lanes - h`` are written; border
    lanes are computed along (with shifted windows that are not theirs) and dropped."""
    rows, head_dim = q.shape[0], q.shape[1]
    lanes = lane_pixels.shape[0]
    half = lane_kernel // 2
    maps = (q.shape[2] - 2 * half) // lanes
    slots = row_kernel * lane_kernel
    chunks = (maps + maps_per_task - 1) // maps_per_task
    has_rpb = rpb.shape[1] > 0
    for task in prange(rows * chunks):
        i, first_map, last_map, start, n = wide.task_span(task, chunks, maps_per_task, maps, lanes, half)
        task_maps = last_map - first_map
        weights = np.empty((slots, n), dtype=q.dtype)
        for u in range(row_kernel):
            keys = k[key_first[i] + u]
            for w in range(lane_kernel):
                logits = weights[u * lane_kernel + w]
                for j in range(task_maps):  # the sums start from the bias
                    if has_rpb:
                        logits[j * lanes:(j + 1) * lanes] = rpb[(first_map + j) % heads, bias_first[i] + u, half + w]
                    else:
                        logits[j * lanes:(j + 1) * lanes] = 0.0
                wide.add_shifted_dots(q[i], keys, start, w - half, logits)
        largest = weights[0].copy()
        for slot in range(1, slots):
            logits = weights[slot]
            for t in range(n):
                largest[t] = max(largest[t], logits[t])
        total = np.zeros(n, dtype=q.dtype)
        bits = np.empty(n, dtype=exp_bits.dtype)
        for slot in range(slots):
            wide.exp_minus(weights[slot], largest, total, bits, exp_constants)
        for t in range(n):
            total[t] = 1.0 / total[t]
        result = np.zeros((head_dim, n), dtype=q.dtype)  # unnormalised: divided by the total when written
        for u in range(row_kernel):
            wide.add_shifted_products(weights[u * lane_kernel:(u + 1) * lane_kernel], v[key_first[i] + u],
                                      start - half, result)
        for j in range(task_maps):
            for y in range(half, lanes - half):
                t = j * lanes + y
                pixel = (first_map + j) * map_pixels + targets[i] + lane_pixels[y]
                inverse_total = total[t]
                target = out[pixel]
                for c in range(head_dim):
                    target[c] = result[c, t] * inverse_total
                probs = attn[pixel]
                for u in range(row_kernel):
                    for w in range(lane_kernel):
                        probs[u * row_slot_step + w * lane_slot_step] = weights[u * lane_kernel + w, t] * inverse_total


@njit(cache=True, parallel=True)
def forward_corners(q, k, v, rpb, heads, scale, row_sides, col_sides, row_first, row_bias, col_first, col_bias,
                     kernel_h, kernel_w, row_group, row_step, col_group, col_step, exp_constants, exp_bits, out, attn):
    """The corners: queries ``row_sides[a] x col_sides[b]`` (group positions; ``a, b`` in 0, 1 for the
    two ends of an axis) of every map, where neither the wide rows nor the tall columns have shifted
    windows. All queries of one corner share one window, so it is a small dense attention: the keys
    go to ``(d, kh*kw)``, the values to ``(kh*kw, d)``, and every loop runs along the slots or ``d``.
    ``q, k, v, out (B*heads, H, W, d)``, ``attn (B*heads, H, W, kh*kw)``."""
    maps, head_dim = q.shape[0], q.shape[3]
    slots = kernel_h * kernel_w
    has_rpb = rpb.shape[1] > 0
    for task in prange(maps * 4):
        m = task // 4
        corner_rows = row_sides[(task % 4) // 2]
        corner_cols = col_sides[task % 2]
        first_row, first_col = row_first[corner_rows[0]], col_first[corner_cols[0]]
        keys = np.empty((head_dim, slots), dtype=q.dtype)
        values = np.empty((slots, head_dim), dtype=q.dtype)
        for u in range(kernel_h):
            for w in range(kernel_w):
                pixel = (m, row_group + row_step * (first_row + u), col_group + col_step * (first_col + w))
                keys[:, u * kernel_w + w] = k[pixel]
                values[u * kernel_w + w] = v[pixel]
        largest = np.empty(slots, dtype=q.dtype)
        total = np.empty(slots, dtype=q.dtype)
        bits = np.empty(slots, dtype=exp_bits.dtype)
        for x in corner_rows:
            for y in corner_cols:
                query = q[m, row_group + row_step * x, col_group + col_step * y]
                weights = attn[m, row_group + row_step * x, col_group + col_step * y]
                weights[:] = 0.0
                for c in range(head_dim):
                    channel = keys[c]
                    for slot in range(slots):
                        weights[slot] += query[c] * channel[slot]
                for slot in range(slots):
                    weights[slot] *= scale
                if has_rpb:
                    for u in range(kernel_h):
                        bias_row = rpb[m % heads, row_bias[x] + u]
                        for w in range(kernel_w):
                            weights[u * kernel_w + w] += bias_row[col_bias[y] + w]
                largest[:] = weights.max()
                total[:] = 0.0
                wide.exp_minus(weights, largest, total, bits, exp_constants)
                inverse_total = 1.0 / total.sum()
                result = out[m, row_group + row_step * x, col_group + col_step * y]
                result[:] = 0.0
                for slot in range(slots):
                    weights[slot] *= inverse_total
                    value = values[slot]
                    for c in range(head_dim):
                        result[c] += weights[slot] * value[c]
