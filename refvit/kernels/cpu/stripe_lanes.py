r"""Lane tiles of stripe attention on the CPU: many small windows of one head side by side.

A block of up to ``lanes`` windows of one head is copied into tiles ``(sh, sw, d, lanes)`` with the
window index last, so that every loop of :mod:`refvit.kernels.cpu.stripe_small` runs its innermost
iteration over the windows (the lanes): the same arithmetic on each window, vectorised across them,
whatever the window's size. Lanes past the last window of a block hold zeros, are computed like the
others and never written back.

An edit here recompiles the kernels that import it on the next import (:mod:`refvit.kernels.cpu._stale_cache`).
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _lane_windows(index, shape, stripes, bases):
    """Block ``index`` (of ``lanes = len(bases)`` consecutive windows of one head, windows ordered (head,
    batch, window-row, window-col)) of a ``(B, heads, H, W)`` map -> ``(head, used)``, with
    ``bases[w] = ((b * heads + head) * H + top) * W + left``, the flat token index of window ``w``'s first
    token, for ``w < used``."""
    batch, heads, height, width = shape
    stripe_h, stripe_w = stripes
    window_rows, window_cols = height // stripe_h, width // stripe_w
    per_head, lanes = batch * window_rows * window_cols, bases.shape[0]
    blocks_per_head = (per_head + lanes - 1) // lanes
    head, block = index // blocks_per_head, index % blocks_per_head
    first = block * lanes
    used = min(lanes, per_head - first)
    for w in range(used):
        window = first + w
        window_col = window % window_cols
        window //= window_cols
        b, top = window // window_rows, (window % window_rows) * stripe_h
        bases[w] = ((b * heads + head) * height + top) * width + window_col * stripe_w
    return head, used


@njit(cache=True)
def _gather_lanes(flat, width, bases, used, tile):
    """``tile[y, x, j, w] = flat[(bases[w] + y * W + x) * d + j]`` for ``w < used``, zeros beyond:
    ``flat`` is a C-contiguous ``(B, heads, H, W, d)`` array raveled. Lane by lane, so that the writes run
    along the tile (measured 2x faster than window by window)."""
    stripe_h, stripe_w, depth, lanes = tile.shape
    for y in range(stripe_h):
        for x in range(stripe_w):
            offset = y * width + x
            for j in range(depth):
                row = tile[y, x, j]
                for w in range(used):
                    row[w] = flat[(bases[w] + offset) * depth + j]
                for w in range(used, lanes):
                    row[w] = 0.0


@njit(cache=True)
def _scatter_lanes(tile, width, bases, used, flat):
    """Inverse of :func:`_gather_lanes` for the lanes ``w < used`` (rounded to ``flat``'s dtype); window by
    window, so that the writes run along ``flat`` (measured 2-3x faster than lane by lane)."""
    stripe_h, stripe_w, depth = tile.shape[:3]
    for w in range(used):
        for y in range(stripe_h):
            for x in range(stripe_w):
                start = (bases[w] + y * width + x) * depth
                for j in range(depth):
                    flat[start + j] = tile[y, x, j, w]


@njit(cache=True)
def _add_lepe_lanes(source, taps, direction, target):
    """``target[y, x] += sum_{a,e} taps[a, e] * source[y + direction(a-1), x + direction(e-1)]`` inside the
    window, lane by lane; ``source``, ``target`` ``(sh, sw, d, lanes)``, ``taps`` ``(3, 3, d)``.
    ``direction = 1``: LePE; ``-1``: its transpose. The same sums in the same order as
    :func:`refvit.kernels.cpu.stripe_tiles._add_lepe`."""
    stripe_h, stripe_w, head_dim, lanes = source.shape
    for y in range(stripe_h):
        for x in range(stripe_w):
            for a in range(3):
                yy = y + direction * (a - 1)
                if yy < 0 or yy >= stripe_h:
                    continue
                for e in range(3):
                    xx = x + direction * (e - 1)
                    if xx < 0 or xx >= stripe_w:
                        continue
                    for j in range(head_dim):
                        tap, neighbour, row = taps[a, e, j], source[yy, xx, j], target[y, x, j]
                        for w in range(lanes):
                            row[w] += tap * neighbour[w]


@njit(cache=True)
def _lepe_partials_lanes(grads, values, taps_lanes, bias_lanes):
    """``taps_lanes[a, e, :, w] = sum_{y,x} G[y, x, :, w] v[y + a - 1, x + e - 1, :, w]`` inside the window and
    ``bias_lanes[:, w] = sum_{y,x} G[y, x, :, w]``: each window's LePE parameter gradient, summed in float64
    (the products in the inputs' dtype, as :func:`refvit.kernels.cpu.stripe_tiles._lepe_partials`)."""
    stripe_h, stripe_w, head_dim, lanes = grads.shape
    taps_lanes[:] = 0.0
    bias_lanes[:] = 0.0
    for y in range(stripe_h):
        for x in range(stripe_w):
            for j in range(head_dim):
                g, total = grads[y, x, j], bias_lanes[j]
                for w in range(lanes):
                    total[w] += g[w]
            for a in range(3):
                yy = y + a - 1
                if yy < 0 or yy >= stripe_h:
                    continue
                for e in range(3):
                    xx = x + e - 1
                    if xx < 0 or xx >= stripe_w:
                        continue
                    for j in range(head_dim):
                        g, neighbour, total = grads[y, x, j], values[yy, xx, j], taps_lanes[a, e, j]
                        for w in range(lanes):
                            total[w] += g[w] * neighbour[w]


@njit(cache=True)
def _sum_lanes(taps_lanes, bias_lanes, dtaps, dbias):
    """``dtaps[a, e, j] = sum_w taps_lanes[a, e, j, w]``, ``dbias[j] = sum_w bias_lanes[j, w]``, in lane order."""
    head_dim, lanes = bias_lanes.shape
    for j in range(head_dim):
        total = 0.0
        for w in range(lanes):
            total += bias_lanes[j, w]
        dbias[j] = total
        for a in range(3):
            for e in range(3):
                total = 0.0
                for w in range(lanes):
                    total += taps_lanes[a, e, j, w]
                dtaps[a, e, j] = total
