"""Stripe attention with LePE on the CPU, working on the windows in place.

No window is copied out of the ``(B, heads, H, W, d)`` arrays: a token at ``(y, x)`` belongs to the
window whose top-left corner is ``(y - y % sh, x - x % sw)``, and the kernels index the window's
tokens directly. Every ``prange`` runs over the rows of the array it writes (gather, never scatter):

* ``_forward_rows``: prange over ``(batch, head, query row)``; for each query, logits into a
  ``sh*sw`` buffer, softmax, weighted sum of ``v``, then the LePE gather. Writes ``out``, the
  attention part ``A`` and the per-query log-sum-exp.
* ``_dq_rows``: prange over ``(batch, head, query row)``; recomputes ``P_ij = exp(s_ij - lse_i)``.
* ``_dk_dv_rows``: prange over ``(batch, head, key row)``; for each key, loops over the queries of its
  window (gather form of ``P^T G`` and ``dS^T q``), then adds the LePE term to ``dv``.
* ``_dlepe_channels``: prange over the ``heads*d`` channels; each sums its 9 taps and its bias.

Memory kept for backward beyond the inputs: ``A (B, heads, H, W, d)`` and ``lse (B, heads, H, W)``
(float64), never the ``(sh*sw) x (sh*sw)`` attention matrix of a window. Sums run in float64 and are
rounded once on store.
"""
import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _forward_rows(q, k, v, weight, bias, has_lepe, stripe_h, stripe_w, scale, out, attended, logsumexp):
    batch, heads, height, width, head_dim = q.shape
    window_size = stripe_h * stripe_w
    for row in prange(batch * heads * height):
        b = row // (heads * height)
        head = (row // height) % heads
        y = row % height
        top = y - y % stripe_h
        logits = np.empty(window_size)
        acc = np.empty(head_dim)
        for x in range(width):
            left = x - x % stripe_w
            largest = -np.inf
            for t in range(window_size):
                ky = top + t // stripe_w
                kx = left + t % stripe_w
                s = 0.0
                for j in range(head_dim):
                    s += q[b, head, y, x, j] * k[b, head, ky, kx, j]
                s *= scale
                logits[t] = s
                if s > largest:
                    largest = s
            total = 0.0
            for t in range(window_size):
                logits[t] = math.exp(logits[t] - largest)
                total += logits[t]
            acc[:] = 0.0
            for t in range(window_size):
                p = logits[t] / total
                ky = top + t // stripe_w
                kx = left + t % stripe_w
                for j in range(head_dim):
                    acc[j] += p * v[b, head, ky, kx, j]
            logsumexp[b, head, y, x] = largest + math.log(total)
            for j in range(head_dim):
                attended[b, head, y, x, j] = acc[j]
                if has_lepe:
                    acc[j] += bias[head, j] + _lepe_gather(v, weight, b, head, y, x, j, top, left,
                                                           stripe_h, stripe_w, 1)
                out[b, head, y, x, j] = acc[j]


@njit(cache=True)
def _lepe_gather(values, weight, b, head, y, x, j, top, left, stripe_h, stripe_w, direction):
    """``sum_{a,e} w[a, e] values[y + direction*(a-1), x + direction*(e-1)]`` inside the window.

    ``direction = 1``: the LePE forward (reads ``v``); ``-1``: its transpose (reads ``G`` for ``dv``).
    """
    total = 0.0
    for a in range(3):
        yy = y + direction * (a - 1)
        if yy < top or yy >= top + stripe_h:
            continue
        for e in range(3):
            xx = x + direction * (e - 1)
            if xx < left or xx >= left + stripe_w:
                continue
            total += weight[head, j, a, e] * values[b, head, yy, xx, j]
    return total


@njit(cache=True, parallel=True)
def _dq_rows(dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, scale, dq):
    batch, heads, height, width, head_dim = q.shape
    window_size = stripe_h * stripe_w
    for row in prange(batch * heads * height):
        b = row // (heads * height)
        head = (row // height) % heads
        y = row % height
        top = y - y % stripe_h
        acc = np.empty(head_dim)
        for x in range(width):
            left = x - x % stripe_w
            acc[:] = 0.0
            for t in range(window_size):
                ky = top + t // stripe_w
                kx = left + t % stripe_w
                s = 0.0
                dp = 0.0
                for j in range(head_dim):
                    s += q[b, head, y, x, j] * k[b, head, ky, kx, j]
                    dp += dout[b, head, y, x, j] * v[b, head, ky, kx, j]
                p = math.exp(scale * s - logsumexp[b, head, y, x])
                ds = p * (dp - delta[b, head, y, x])
                for j in range(head_dim):
                    acc[j] += ds * k[b, head, ky, kx, j]
            for j in range(head_dim):
                dq[b, head, y, x, j] = scale * acc[j]


@njit(cache=True, parallel=True)
def _dk_dv_rows(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, scale, dk, dv):
    batch, heads, height, width, head_dim = q.shape
    window_size = stripe_h * stripe_w
    for row in prange(batch * heads * height):
        b = row // (heads * height)
        head = (row // height) % heads
        y = row % height
        top = y - y % stripe_h
        acc_k = np.empty(head_dim)
        acc_v = np.empty(head_dim)
        for x in range(width):
            left = x - x % stripe_w
            acc_k[:] = 0.0
            acc_v[:] = 0.0
            for t in range(window_size):
                qy = top + t // stripe_w
                qx = left + t % stripe_w
                s = 0.0
                dp = 0.0
                for j in range(head_dim):
                    s += q[b, head, qy, qx, j] * k[b, head, y, x, j]
                    dp += dout[b, head, qy, qx, j] * v[b, head, y, x, j]
                p = math.exp(scale * s - logsumexp[b, head, qy, qx])
                ds = p * (dp - delta[b, head, qy, qx])
                for j in range(head_dim):
                    acc_v[j] += p * dout[b, head, qy, qx, j]
                    acc_k[j] += ds * q[b, head, qy, qx, j]
            for j in range(head_dim):
                dk[b, head, y, x, j] = scale * acc_k[j]
                if has_lepe:
                    acc_v[j] += _lepe_gather(dout, weight, b, head, y, x, j, top, left, stripe_h, stripe_w, -1)
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
