"""Window tiles of stripe attention on the CPU: a window's tokens copied in and out of a ``(sh, sw, d)``
tile, and the LePE taps applied inside the window (forward and transpose) and differentiated.

Shared by the BLAS kernels (:mod:`refvit.kernels.cpu.stripe_attention`) and the loop kernels for small
windows (:mod:`refvit.kernels.cpu.stripe_small`). An edit here recompiles both on the next import
(:mod:`refvit.kernels.cpu._stale_cache`).
"""
from numba import njit


@njit(cache=True)
def _gather(plane, top, left, tile):
    """``tile[t] = plane[top + t // sw, left + t % sw]``: the window's tokens, row-major, as ``(n, d)``."""
    stripe_h, stripe_w, depth = tile.shape
    for y in range(stripe_h):
        for x in range(stripe_w):
            source, target = plane[top + y, left + x], tile[y, x]
            for j in range(depth):  # element by element: a row assignment compiled Numba's array setitem
                target[j] = source[j]


@njit(cache=True)
def _scatter(tile, top, left, plane):
    """Inverse of :func:`_gather`: ``plane[top + y, left + x] = tile[y, x]`` (rounded to the plane's dtype)."""
    stripe_h, stripe_w, depth = tile.shape
    for y in range(stripe_h):
        for x in range(stripe_w):
            source, target = tile[y, x], plane[top + y, left + x]
            for j in range(depth):
                target[j] = source[j]


@njit(cache=True)
def _add_lepe(source, taps, direction, target):
    """``target[y, x] += sum_{a,e} taps[a, e] * source[y + direction(a-1), x + direction(e-1)]`` over the
    neighbours inside the window; ``source``, ``target`` are ``(sh, sw, d)`` tiles, ``taps`` ``(3, 3, d)``.

    ``direction = 1``: the LePE forward (``source`` = values); ``-1``: its transpose (gradients, for ``dv``).
    """
    stripe_h, stripe_w, head_dim = source.shape
    for y in range(stripe_h):
        for x in range(stripe_w):
            row = target[y, x]
            for a in range(3):
                yy = y + direction * (a - 1)
                if yy < 0 or yy >= stripe_h:
                    continue
                for e in range(3):
                    xx = x + direction * (e - 1)
                    if xx < 0 or xx >= stripe_w:
                        continue
                    tap, neighbour = taps[a, e], source[yy, xx]
                    for j in range(head_dim):
                        row[j] += tap[j] * neighbour[j]


@njit(cache=True)
def _lepe_partials(grads, values, dtaps, dbias):
    """``dtaps[a, e] = sum_{y,x} G[y, x] v[y + a - 1, x + e - 1]`` inside the window, ``dbias = sum G`` (float64)."""
    stripe_h, stripe_w, head_dim = grads.shape
    for j in range(head_dim):
        dbias[j] = 0.0
        for a in range(3):
            for e in range(3):
                dtaps[a, e, j] = 0.0
    for y in range(stripe_h):
        for x in range(stripe_w):
            g = grads[y, x]
            for j in range(head_dim):
                dbias[j] += g[j]
            for a in range(3):
                yy = y + a - 1
                if yy < 0 or yy >= stripe_h:
                    continue
                for e in range(3):
                    xx = x + e - 1
                    if xx < 0 or xx >= stripe_w:
                        continue
                    slot, neighbour = dtaps[a, e], values[yy, xx]
                    for j in range(head_dim):
                        slot[j] += g[j] * neighbour[j]
