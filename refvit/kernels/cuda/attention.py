r"""Attention on the GPU: one thread per query row forward, gather-form backward.

``S_ij = scale * q_i . k_j + bias_ij`` is recomputed wherever it is needed; no ``(Nq, Nk)``
matrix is stored. The bias keeps its own 4-D shape (leading axes of size 1 added); an axis of
size 1 is read at index 0.

* forward, one thread per ``(b, head, i)``: pass 1 finds ``m_i = max_j S_ij``; pass 2 adds
  ``e^{S_ij - m_i} v_j`` into the thread's own output row and sums ``l_i``; the row is then
  divided by ``l_i``. Saves ``lse_i = m_i + log l_i`` (float64).
* backward, one thread per query row: ``delta_i = sum_j P_ij (dout_i . v_j)`` (pass 1), then
  ``dS_ij = P_ij (dout_i . v_j - delta_i)`` and ``dq_i = scale sum_j dS_ij k_j`` (pass 2), with
  ``P_ij = exp(S_ij - lse_i)``. ``dS_ij`` is added to the bias gradient with ``cuda.atomic.add``
  at the bias index of ``(b, head, i, j)``, which also sums over the broadcast axes.
* backward, one thread per key row ``(b, head, j)``: ``dv_j = sum_i P_ij dout_i`` and
  ``dk_j = scale sum_i dS_ij q_i`` from the saved ``lse_i`` and ``delta_i``.
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless, zeros


@cuda.jit(device=True)
def _logit(q, k, bias, has_bias, scale, b, h, i, j):
    dot = 0.0
    for c in range(q.shape[3]):
        dot += q[b, h, i, c] * k[b, h, j, c]
    s = scale * dot
    if has_bias:
        s += bias[_bias_index(bias, b, h, i, j)]
    return s


@cuda.jit(device=True)
def _probability(q, k, bias, has_bias, scale, b, h, i, j, logsumexp):
    """``P_ij = exp(S_ij - lse_i)``, recomputed from the saved log-sum-exp of row ``i``."""
    return math.exp(_logit(q, k, bias, has_bias, scale, b, h, i, j) - logsumexp)


@cuda.jit(device=True)
def _row(index, a):
    """Flat thread index -> ``(b, head, n)`` of a row of ``a (B, heads, N, d)`` (``b == B`` past the end)."""
    heads, rows = a.shape[1], a.shape[2]
    return index // (heads * rows), (index // rows) % heads, index % rows


@cuda.jit(device=True)
def _bias_index(bias, b, h, i, j):
    return (b if bias.shape[0] > 1 else 0, h if bias.shape[1] > 1 else 0,
            i if bias.shape[2] > 1 else 0, j if bias.shape[3] > 1 else 0)


@cuda.jit(device=True)
def _dot_rows(a, b, h, i, other, j):
    dot = 0.0
    for c in range(a.shape[3]):
        dot += a[b, h, i, c] * other[b, h, j, c]
    return dot


@cuda.jit
def _forward_kernel(q, k, v, bias, has_bias, scale, out, logsumexp):
    b, h, i = _row(cuda.grid(1), q)
    if b >= q.shape[0]:
        return
    n_keys, value_dim = v.shape[2], v.shape[3]
    row_max = -math.inf
    for j in range(n_keys):
        s = _logit(q, k, bias, has_bias, scale, b, h, i, j)
        if s > row_max:
            row_max = s
    for c in range(value_dim):
        out[b, h, i, c] = 0.0
    total = 0.0
    for j in range(n_keys):
        p = math.exp(_logit(q, k, bias, has_bias, scale, b, h, i, j) - row_max)
        total += p
        for c in range(value_dim):
            out[b, h, i, c] += p * v[b, h, j, c]
    for c in range(value_dim):
        out[b, h, i, c] = out[b, h, i, c] / total
    logsumexp[b, h, i] = row_max + math.log(total)


def forward(q, k, v, bias, scale):
    """-> ``(out (B, h, Nq, dv), logsumexp (B, h, Nq) float64)``, device arrays iff given device arrays."""
    on_device = any_device(q, k, v, bias)
    q, k, v, bias4 = to_device(q, k, v, _bias_4d(bias, q.dtype))
    out = empty(q.shape[:3] + v.shape[3:], q.dtype)
    logsumexp = empty(q.shape[:3], np.float64)
    _forward_kernel[grid_1d(q.shape[0] * q.shape[1] * q.shape[2])](
        q, k, v, bias4, bias is not None, float(scale), out, logsumexp)
    return to_host_unless(on_device, out, logsumexp)


@cuda.jit
def _backward_query_kernel(dout, q, k, v, bias, has_bias, scale, logsumexp, dq, delta, dbias):
    b, h, i = _row(cuda.grid(1), q)
    if b >= q.shape[0]:
        return
    head_dim, n_keys = q.shape[3], k.shape[2]
    lse = logsumexp[b, h, i]
    row_delta = 0.0
    for j in range(n_keys):
        row_delta += _probability(q, k, bias, has_bias, scale, b, h, i, j, lse) * _dot_rows(dout, b, h, i, v, j)
    delta[b, h, i] = row_delta
    for c in range(head_dim):
        dq[b, h, i, c] = 0.0
    for j in range(n_keys):
        dlogit = _probability(q, k, bias, has_bias, scale, b, h, i, j, lse) * (
            _dot_rows(dout, b, h, i, v, j) - row_delta)
        for c in range(head_dim):
            dq[b, h, i, c] += scale * dlogit * k[b, h, j, c]
        if has_bias:
            cuda.atomic.add(dbias, _bias_index(dbias, b, h, i, j), dlogit)


@cuda.jit
def _backward_key_kernel(dout, q, k, v, bias, has_bias, scale, logsumexp, delta, dk, dv):
    b, h, j = _row(cuda.grid(1), k)
    if b >= k.shape[0]:
        return
    n_queries, head_dim, value_dim = q.shape[2], k.shape[3], v.shape[3]
    for c in range(head_dim):
        dk[b, h, j, c] = 0.0
    for c in range(value_dim):
        dv[b, h, j, c] = 0.0
    for i in range(n_queries):
        p = _probability(q, k, bias, has_bias, scale, b, h, i, j, logsumexp[b, h, i])
        dlogit = p * (_dot_rows(dout, b, h, i, v, j) - delta[b, h, i])
        for c in range(value_dim):
            dv[b, h, j, c] += p * dout[b, h, i, c]
        for c in range(head_dim):
            dk[b, h, j, c] += scale * dlogit * q[b, h, i, c]


def backward(dout, q, k, v, bias, scale, logsumexp):
    """-> ``(dq, dk, dv, dbias)``, ``dbias`` of ``bias.shape`` or None; device arrays iff given device arrays."""
    on_device = any_device(dout, q, k, v, bias)
    dout, q, k, v, bias4, logsumexp = to_device(dout, q, k, v, _bias_4d(bias, q.dtype), logsumexp)
    has_bias = bias is not None
    scale = float(scale)
    dq = empty(q.shape, q.dtype)
    delta = empty(q.shape[:3], np.float64)
    dbias4 = zeros(bias4.shape, q.dtype)
    _backward_query_kernel[grid_1d(q.shape[0] * q.shape[1] * q.shape[2])](
        dout, q, k, v, bias4, has_bias, scale, logsumexp, dq, delta, dbias4)
    dk = empty(k.shape, k.dtype)
    dv = empty(v.shape, v.dtype)
    _backward_key_kernel[grid_1d(k.shape[0] * k.shape[1] * k.shape[2])](
        dout, q, k, v, bias4, has_bias, scale, logsumexp, delta, dk, dv)
    dbias = dbias4.reshape(tuple(bias.shape)) if has_bias else None
    return (*to_host_unless(on_device, dq, dk, dv), None if dbias is None else to_host_unless(on_device, dbias))


def _bias_4d(bias, dtype):
    """The bias with leading axes of size 1 up to 4-D (NumPy or device array); a 1-element stand-in for None."""
    if bias is None:
        return np.zeros((1, 1, 1, 1), dtype=dtype)
    shape = (1,) * (4 - bias.ndim) + tuple(bias.shape)
    if isinstance(bias, np.ndarray):
        return np.ascontiguousarray(bias).reshape(shape)
    return bias.reshape(shape)
