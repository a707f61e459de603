"""Stripe attention with LePE on the CPU, working on the windows in place.

No window is copied out of the ``(B, heads, H, W, d)`` arrays: the kernels index a window's tokens
directly, from its top-left corner ``(top, left)``. The ``prange`` of the three attention kernels runs
over ``(batch, head, window-row, window-col, row inside the window)``, so one thread walks one window
after another and that window's keys stay in cache; each iteration writes only its own row of the
output (gather, never scatter):

* ``_forward_rows``: for each query of the row, logits into a ``sh*sw`` buffer, softmax, weighted sum
  of ``v``, then the LePE gather. Writes ``out``, the attention part ``A`` and the log-sum-exp ``lse``.
* ``_dq_rows``: for each query, recomputes ``P_ij = exp(s_ij - lse_i)`` and sums ``dS_ij k_j``.
* ``_dk_dv_rows``: for each key, loops over the queries of its window (gather form of ``P^T G`` and
  ``dS^T q``), then adds the transposed LePE gather of ``G`` to ``dv``.
* ``_dlepe_channels``: prange over the ``heads*d`` channels; each sums its 9 taps and its bias.

Memory kept for backward beyond the inputs: ``A (B, heads, H, W, d)`` and ``lse (B, heads, H, W)``
(float64), never the ``(sh*sw) x (sh*sw)`` attention matrix of a window. Sums run in float64 and are
rounded once on store.
"""
import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _dot(a, b):
    total = 0.0
    for j in range(a.shape[0]):
        total += a[j] * b[j]
    return total


@njit(cache=True)
def _window_row(index, heads, window_rows, window_cols, stripe_h, stripe_w):
    """Flat ``prange`` index over ``(batch, head, window-row, window-col, row in window)``
    -> ``(b, head, top, left, y)``: the window's top-left corner and the map row ``y``."""
    row_in_window = index % stripe_h
    index //= stripe_h
    window_col = index % window_cols
    index //= window_cols
    window_row = index % window_rows
    index //= window_rows
    top = window_row * stripe_h
    return index // heads, index % heads, top, window_col * stripe_w, top + row_in_window


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
def _forward_rows(q, k, v, weight, bias, has_lepe, stripe_h, stripe_w, scale, out, attended, logsumexp):
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    for index in prange(batch * heads * window_rows * window_cols * stripe_h):
        b, head, top, left, y = _window_row(index, heads, window_rows, window_cols, stripe_h, stripe_w)
        keys, values = k[b, head], v[b, head]
        logits = np.empty(stripe_h * stripe_w)
        acc = np.empty(head_dim)
        for x in range(left, left + stripe_w):
            query = q[b, head, y, x]
            largest = -np.inf
            t = 0
            for ky in range(top, top + stripe_h):
                for kx in range(left, left + stripe_w):
                    logits[t] = scale * _dot(query, keys[ky, kx])
                    largest = max(largest, logits[t])
                    t += 1
            total = 0.0
            for t in range(logits.size):
                logits[t] = math.exp(logits[t] - largest)
                total += logits[t]
            acc[:] = 0.0
            t = 0
            for ky in range(top, top + stripe_h):
                for kx in range(left, left + stripe_w):
                    p = logits[t] / total
                    value = values[ky, kx]
                    for j in range(head_dim):
                        acc[j] += p * value[j]
                    t += 1
            logsumexp[b, head, y, x] = largest + math.log(total)
            for j in range(head_dim):
                attended[b, head, y, x, j] = acc[j]
                if has_lepe:
                    acc[j] += bias[head, j] + _lepe_gather(values, weight[head], j, y, x, top, left,
                                                           stripe_h, stripe_w, 1)
                out[b, head, y, x, j] = acc[j]


@njit(cache=True, parallel=True)
def _dq_rows(dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, scale, dq):
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    for index in prange(batch * heads * window_rows * window_cols * stripe_h):
        b, head, top, left, y = _window_row(index, heads, window_rows, window_cols, stripe_h, stripe_w)
        keys, values = k[b, head], v[b, head]
        acc = np.empty(head_dim)
        for x in range(left, left + stripe_w):
            query, grad = q[b, head, y, x], dout[b, head, y, x]
            acc[:] = 0.0
            for ky in range(top, top + stripe_h):
                for kx in range(left, left + stripe_w):
                    key = keys[ky, kx]
                    p = math.exp(scale * _dot(query, key) - logsumexp[b, head, y, x])
                    dlogit = p * (_dot(grad, values[ky, kx]) - delta[b, head, y, x])   # dS_ij
                    for j in range(head_dim):
                        acc[j] += dlogit * key[j]
            for j in range(head_dim):
                dq[b, head, y, x, j] = scale * acc[j]


@njit(cache=True, parallel=True)
def _dk_dv_rows(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, scale, dk, dv):
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    for index in prange(batch * heads * window_rows * window_cols * stripe_h):
        b, head, top, left, y = _window_row(index, heads, window_rows, window_cols, stripe_h, stripe_w)
        queries, grads = q[b, head], dout[b, head]
        acc_k = np.empty(head_dim)
        acc_v = np.empty(head_dim)
        for x in range(left, left + stripe_w):
            key, value = k[b, head, y, x], v[b, head, y, x]
            acc_k[:] = 0.0
            acc_v[:] = 0.0
            for qy in range(top, top + stripe_h):       # the queries of this key's window
                for qx in range(left, left + stripe_w):
                    query, grad = queries[qy, qx], grads[qy, qx]
                    p = math.exp(scale * _dot(query, key) - logsumexp[b, head, qy, qx])
                    dlogit = p * (_dot(grad, value) - delta[b, head, qy, qx])
                    for j in range(head_dim):
                        acc_v[j] += p * grad[j]
                        acc_k[j] += dlogit * query[j]
            for j in range(head_dim):
                dk[b, head, y, x, j] = scale * acc_k[j]
                if has_lepe:
                    acc_v[j] += _lepe_gather(grads, weight[head], j, y, x, top, left, stripe_h, stripe_w, -1)
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


def forward(q, k, v, lepe_weight, lepe_bias, stripe_size, scale):
    """``-> (out, saved)``; ``saved`` is what :func:`backward` needs."""
    q, k, v = (np.ascontiguousarray(x) for x in (q, k, v))
    heads, head_dim = q.shape[1], q.shape[4]
    weight, bias, has_lepe = _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, q.dtype)
    out = np.empty_like(q)
    attended = np.empty_like(q)
    logsumexp = np.empty(q.shape[:4])
    _forward_rows(q, k, v, weight, bias, has_lepe, stripe_size[0], stripe_size[1], float(scale),
                  out, attended, logsumexp)
    return out, (q, k, v, weight, has_lepe, attended, logsumexp)


def backward(dout, saved, has_bias, stripe_size, scale):
    """``-> (dq, dk, dv, dlepe_weight, dlepe_bias)``."""
    q, k, v, weight, has_lepe, attended, logsumexp = saved
    dout = np.ascontiguousarray(dout)
    stripe_h, stripe_w = stripe_size
    delta = np.sum(dout.astype(np.float64) * attended, axis=-1)     # G_i . A_i
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _dq_rows(dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, float(scale), dq)
    _dk_dv_rows(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, float(scale), dk, dv)
    if not has_lepe:
        return dq, dk, dv, None, None
    dweight = np.empty_like(weight)
    dbias = np.empty(weight.shape[:2], dtype=q.dtype)
    _dlepe_channels(dout, v, stripe_h, stripe_w, dweight, dbias)
    channels = weight.shape[0] * weight.shape[1]
    return dq, dk, dv, dweight.reshape(channels, 1, 3, 3), (dbias.reshape(channels) if has_bias else None)
