"""Stripe attention with LePE on the CPU, working on the windows in place.

The kernels index a window's tokens directly in the ``(B, heads, H, W, d)`` arrays, from its top-left
corner ``(top, left)``; the map is never rearranged into windows. The ``prange`` of the three attention
kernels runs over ``(batch, head, window-row, window-col)`` and each iteration walks the rows of its
window, writing only that window's rows of the output (gather, never scatter). The one copy is a
per-window scratch tile: the window's keys (or queries, values, gradients) laid out feature-major,
``(d, sh*sw)``, so that the ``sh*sw`` dot products of one token run as a contiguous inner loop over
tokens with independent sums (each still adds ``j = 0, 1, ...`` in order; no fastmath).

* ``_forward_windows``: per query, logits into an ``sh*sw`` buffer, softmax, weighted sum of ``v``,
  then the LePE gather. Writes ``out``, the attention part ``A`` and the log-sum-exp ``lse``.
* ``_dq_windows``: per query, recomputes ``P_ij = exp(s_ij - lse_i)`` and sums ``dS_ij k_j``.
* ``_dk_dv_windows``: per key, loops over the queries of its window (gather form of ``P^T G`` and
  ``dS^T q``), then adds the transposed LePE gather of ``G`` to ``dv``.
* ``_dlepe_channels``: prange over the ``heads*d`` channels; each sums its 9 taps and its bias.

Memory kept for backward beyond the inputs: ``A (B, heads, H, W, d)`` and ``lse (B, heads, H, W)``
(float64), never the ``(sh*sw) x (sh*sw)`` attention matrix of a window; scratch per thread is
``O(d * sh*sw)``. Sums run in float64 and are rounded once on store.
"""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry


@njit(cache=True)
def _window(index, heads, window_rows, window_cols, stripe_h, stripe_w):
    """Flat ``prange`` index over ``(batch, head, window-row, window-col)`` -> ``(b, head, top, left)``."""
    window_col = index % window_cols
    index //= window_cols
    window_row = index % window_rows
    index //= window_rows
    return index // heads, index % heads, window_row * stripe_h, window_col * stripe_w


@njit(cache=True)
def _feature_major(plane, top, left, stripe_h, stripe_w, tile):
    """``tile[j, t] = plane[top + t // sw, left + t % sw, j]``: one window's tokens, feature axis first."""
    t = 0
    for y in range(top, top + stripe_h):
        for x in range(left, left + stripe_w):
            for j in range(tile.shape[0]):
                tile[j, t] = plane[y, x, j]
            t += 1


@njit(cache=True)
def _dots(vector, tile, out):
    """``out[t] = vector . tile[:, t]`` for every token ``t`` of a window.

    The feature axis is the outer loop, so the inner loop runs over contiguous tokens with
    independent sums (it vectorises without fastmath); each sum still adds ``j = 0, 1, ...`` in order.
    """
    out[:] = 0.0
    for j in range(tile.shape[0]):
        coefficient = vector[j]
        row = tile[j]
        for t in range(out.size):
            out[t] += coefficient * row[t]


@njit(cache=True)
def _accumulate(weights, plane, top, left, stripe_h, stripe_w, acc):
    """``acc += sum_t weights[t] * plane[top + t // sw, left + t % sw]``, read in place."""
    t = 0
    for y in range(top, top + stripe_h):
        for x in range(left, left + stripe_w):
            token = plane[y, x]
            weight = weights[t]
            for j in range(acc.shape[0]):
                acc[j] += weight * token[j]
            t += 1


@njit(cache=True)
def _lepe_gather(plane, weight, j, y, x, top, left, stripe_h, stripe_w, direction):
    """``sum_{a,e} weight[j, a, e] plane[y + direction*(a-1), x + direction*(e-1), j]`` inside the window.

    ``direction = 1``: the LePE forward (reads ``v``); ``-1``: its transpose (reads ``G`` for ``dv``).
    """
    total = 0.0
    for a in range(3):
        yy = y + direction * (a - 1)
        if yy < top or yy >= top + stripe_h:
            continue
        for e in range(3):
            xx = x + direction * (e - 1)
            if left <= xx < left + stripe_w:
                total += weight[j, a, e] * plane[yy, xx, j]
    return total


@njit(cache=True, parallel=True)
def _forward_windows(q, k, v, weight, bias, has_lepe, stripe_h, stripe_w, scale, out, attended, logsumexp):
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    for index in prange(batch * heads * window_rows * window_cols):
        b, head, top, left = _window(index, heads, window_rows, window_cols, stripe_h, stripe_w)
        keys = np.empty((head_dim, stripe_h * stripe_w), dtype=k.dtype)
        _feature_major(k[b, head], top, left, stripe_h, stripe_w, keys)
        logits = np.empty(stripe_h * stripe_w)
        acc = np.empty(head_dim)
        for y in range(top, top + stripe_h):
            for x in range(left, left + stripe_w):
                _dots(q[b, head, y, x], keys, logits)
                largest = -np.inf
                for t in range(logits.size):
                    logits[t] *= scale
                    largest = max(largest, logits[t])
                total = 0.0
                for t in range(logits.size):
                    logits[t] = math.exp(logits[t] - largest)
                    total += logits[t]
                for t in range(logits.size):
                    logits[t] /= total
                acc[:] = 0.0
                _accumulate(logits, v[b, head], top, left, stripe_h, stripe_w, acc)
                logsumexp[b, head, y, x] = largest + math.log(total)
                for j in range(head_dim):
                    attended[b, head, y, x, j] = acc[j]
                    if has_lepe:
                        acc[j] += bias[head, j] + _lepe_gather(v[b, head], weight[head], j, y, x, top, left,
                                                               stripe_h, stripe_w, 1)
                    out[b, head, y, x, j] = acc[j]


@njit(cache=True, parallel=True)
def _dq_windows(dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, scale, dq):
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    for index in prange(batch * heads * window_rows * window_cols):
        b, head, top, left = _window(index, heads, window_rows, window_cols, stripe_h, stripe_w)
        keys = np.empty((head_dim, stripe_h * stripe_w), dtype=k.dtype)
        values = np.empty((head_dim, stripe_h * stripe_w), dtype=v.dtype)
        _feature_major(k[b, head], top, left, stripe_h, stripe_w, keys)
        _feature_major(v[b, head], top, left, stripe_h, stripe_w, values)
        dlogits = np.empty(stripe_h * stripe_w)
        dprobabilities = np.empty(stripe_h * stripe_w)
        acc = np.empty(head_dim)
        for y in range(top, top + stripe_h):
            for x in range(left, left + stripe_w):
                _dots(q[b, head, y, x], keys, dlogits)
                _dots(dout[b, head, y, x], values, dprobabilities)          # G_i . v_t
                for t in range(dlogits.size):                               # dS_it = P_it (G_i . v_t - delta_i)
                    probability = math.exp(scale * dlogits[t] - logsumexp[b, head, y, x])
                    dlogits[t] = probability * (dprobabilities[t] - delta[b, head, y, x])
                acc[:] = 0.0
                _accumulate(dlogits, k[b, head], top, left, stripe_h, stripe_w, acc)
                for j in range(head_dim):
                    dq[b, head, y, x, j] = scale * acc[j]


@njit(cache=True, parallel=True)
def _dk_dv_windows(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, scale, dk, dv):
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    for index in prange(batch * heads * window_rows * window_cols):
        b, head, top, left = _window(index, heads, window_rows, window_cols, stripe_h, stripe_w)
        queries = np.empty((head_dim, stripe_h * stripe_w), dtype=q.dtype)
        grads = np.empty((head_dim, stripe_h * stripe_w), dtype=dout.dtype)
        _feature_major(q[b, head], top, left, stripe_h, stripe_w, queries)
        _feature_major(dout[b, head], top, left, stripe_h, stripe_w, grads)
        query_lse = np.empty(stripe_h * stripe_w)
        query_delta = np.empty(stripe_h * stripe_w)
        t = 0
        for y in range(top, top + stripe_h):
            for x in range(left, left + stripe_w):
                query_lse[t] = logsumexp[b, head, y, x]
                query_delta[t] = delta[b, head, y, x]
                t += 1
        probabilities = np.empty(stripe_h * stripe_w)
        dlogits = np.empty(stripe_h * stripe_w)
        acc_k = np.empty(head_dim)
        acc_v = np.empty(head_dim)
        for y in range(top, top + stripe_h):                 # one key at a time; t runs over the queries
            for x in range(left, left + stripe_w):
                _dots(k[b, head, y, x], queries, probabilities)
                _dots(v[b, head, y, x], grads, dlogits)          # G_t . v_j
                for t in range(probabilities.size):
                    probabilities[t] = math.exp(scale * probabilities[t] - query_lse[t])
                    dlogits[t] = probabilities[t] * (dlogits[t] - query_delta[t])
                acc_k[:] = 0.0
                acc_v[:] = 0.0
                _accumulate(probabilities, dout[b, head], top, left, stripe_h, stripe_w, acc_v)
                _accumulate(dlogits, q[b, head], top, left, stripe_h, stripe_w, acc_k)
                for j in range(head_dim):
                    dk[b, head, y, x, j] = scale * acc_k[j]
                    if has_lepe:
                        acc_v[j] += _lepe_gather(dout[b, head], weight[head], j, y, x, top, left,
                                                 stripe_h, stripe_w, -1)
                    dv[b, head, y, x, j] = acc_v[j]


@njit(cache=True, parallel=True)
def _dlepe_channels(dout, v, stripe_h, stripe_w, dweight, dbias):
    batch, heads, height, width, head_dim = v.shape
    for channel in prange(heads * head_dim):
        head = channel // head_dim
        j = channel % head_dim
        taps = np.zeros((3, 3))
        bias_total = 0.0
        for b in range(batch):
            for y in range(height):
                top = y - y % stripe_h
                for x in range(width):
                    left = x - x % stripe_w
                    g = dout[b, head, y, x, j]
                    bias_total += g
                    for a in range(3):
                        yy = y + a - 1
                        if yy < top or yy >= top + stripe_h:
                            continue
                        for e in range(3):
                            xx = x + e - 1
                            if left <= xx < left + stripe_w:
                                taps[a, e] += g * v[b, head, yy, xx, j]
        for a in range(3):
            for e in range(3):
                dweight[head, j, a, e] = taps[a, e]
        dbias[head, j] = bias_total


def _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, dtype):
    """LePE parameters as ``(heads, d, 3, 3)`` and ``(heads, d)``; zeros (unused) when absent."""
    if lepe_weight is None:
        return np.zeros((heads, head_dim, 3, 3), dtype), np.zeros((heads, head_dim), dtype), False
    weight = np.ascontiguousarray(lepe_weight).reshape(heads, head_dim, 3, 3)
    if lepe_bias is None:
        return weight, np.zeros((heads, head_dim), dtype), True
    return weight, np.ascontiguousarray(lepe_bias).reshape(heads, head_dim), True


@kernel_entry
def forward(q, k, v, lepe_weight, lepe_bias, stripe_size, scale):
    """``-> (out, saved)``; ``saved`` is what :func:`backward` needs."""
    q, k, v = (np.ascontiguousarray(x) for x in (q, k, v))
    heads, head_dim = q.shape[1], q.shape[4]
    weight, bias, has_lepe = _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, q.dtype)
    out = np.empty_like(q)
    attended = np.empty_like(q)
    logsumexp = np.empty(q.shape[:4])
    _forward_windows(q, k, v, weight, bias, has_lepe, stripe_size[0], stripe_size[1], float(scale),
                  out, attended, logsumexp)
    return out, (q, k, v, weight, has_lepe, attended, logsumexp)


@kernel_entry
def backward(dout, saved, has_bias, stripe_size, scale):
    """``-> (dq, dk, dv, dlepe_weight, dlepe_bias)``."""
    q, k, v, weight, has_lepe, attended, logsumexp = saved
    dout = np.ascontiguousarray(dout)
    stripe_h, stripe_w = stripe_size
    delta = np.sum(dout.astype(np.float64) * attended, axis=-1)     # G_i . A_i
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _dq_windows(dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, float(scale), dq)
    _dk_dv_windows(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, float(scale), dk, dv)
    if not has_lepe:
        return dq, dk, dv, None, None
    dweight = np.empty_like(weight)
    dbias = np.empty(weight.shape[:2], dtype=q.dtype)
    _dlepe_channels(dout, v, stripe_h, stripe_w, dweight, dbias)
    channels = weight.shape[0] * weight.shape[1]
    return dq, dk, dv, dweight.reshape(channels, 1, 3, 3), (dbias.reshape(channels) if has_bias else None)
