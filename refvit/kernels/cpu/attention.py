r"""Attention on the CPU, one row at a time: no ``(Nq, Nk)`` probability matrix is ever stored.

``S_ij = scale * q_i . k_j + bias_ij`` is recomputed wherever it is needed, a whole row (or
column) at a time. Four ``prange`` loops, each writing only the rows it owns (gather, no races):

* forward, one query row ``(b, head, i)`` per iteration: ``S_i.`` into an ``Nk`` scratch row,
  ``m_i = max_j S_ij``, ``P_ij = exp(S_ij - m_i) / l_i``, ``out_i = sum_j P_ij v_j``; saves
  ``lse_i = m_i + log l_i`` (float64, ``(B, h, Nq)``).
* backward, query rows: ``P_ij = exp(S_ij - lse_i)``, ``dP_ij = dout_i . v_j``,
  ``delta_i = sum_j P_ij dP_ij``, ``dS_ij = P_ij (dP_ij - delta_i)``, ``dq_i = scale sum_j dS_ij k_j``;
  saves ``delta_i``.
* backward, key rows ``(b, head, j)``: the column ``S_.j`` and ``dP_.j`` over queries, then
  ``dv_j = sum_i P_ij dout_i`` and ``dk_j = scale sum_i dS_ij q_i`` from the saved ``lse`` and ``delta``.
* ``dbias``: one iteration per row of the reduced gradient ``(Bb, Hb, Qb, Kb)`` (the bias shape
  padded to 4-D); it sums the recomputed ``dS_i.`` of every ``(b, head, i)`` that reads that bias
  row, so broadcast axes are reduced without two iterations writing one element.

Speed without ``fastmath``: a dot-product reduction cannot be vectorised (it would reorder the
sum), so rows of dot products are built as sums of scaled rows instead,
``S_i. += q_ic * K^T_c.`` over ``c``, from transposed copies ``K^T``, ``V^T`` (and ``Q^T``,
``dout^T`` for key columns): every inner loop is an independent ``a[j] += x * b[j]``.
The bias keeps its own 4-D shape; an axis of size 1 is read at index 0.
Accumulation is in float64 for both dtypes; results are rounded to the input dtype on store.
"""
import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _products(a, b, h, i, other_t, result):
    """``result[j] = a[b, h, i, :] . other[b, h, j, :]`` for all ``j``, from ``other_t = other^T``."""
    result[:] = 0.0
    for c in range(a.shape[3]):
        weight = a[b, h, i, c]
        for j in range(result.shape[0]):
            result[j] += weight * other_t[b, h, c, j]


@njit(cache=True)
def _logits_row(q, k_t, bias, has_bias, scale, b, h, i, logits):
    """``logits[j] = S_ij`` for all keys ``j``."""
    _products(q, b, h, i, k_t, logits)
    for j in range(logits.shape[0]):
        logits[j] *= scale
    if has_bias:
        bias_row = bias[b * (bias.shape[0] > 1), h * (bias.shape[1] > 1), i * (bias.shape[2] > 1)]
        for j in range(logits.shape[0]):
            logits[j] += bias_row[j * (bias.shape[3] > 1)]


@njit(cache=True)
def _logits_column(k, q_t, bias, has_bias, scale, b, h, j, logits):
    """``logits[i] = S_ij`` for all queries ``i``."""
    _products(k, b, h, j, q_t, logits)
    for i in range(logits.shape[0]):
        logits[i] *= scale
    if has_bias:
        bias_b, bias_h, bias_j = b * (bias.shape[0] > 1), h * (bias.shape[1] > 1), j * (bias.shape[3] > 1)
        for i in range(logits.shape[0]):
            logits[i] += bias[bias_b, bias_h, i * (bias.shape[2] > 1), bias_j]


@njit(cache=True)
def _query_row_gradient(dout, q, k_t, v_t, bias, has_bias, scale, lse, b, h, i, dlogits, dprobs):
    """``dlogits[j] = dS_ij`` for all keys; returns ``delta_i``."""
    _logits_row(q, k_t, bias, has_bias, scale, b, h, i, dlogits)
    _products(dout, b, h, i, v_t, dprobs)
    row_delta = 0.0
    for j in range(dlogits.shape[0]):
        dlogits[j] = math.exp(dlogits[j] - lse)
        row_delta += dlogits[j] * dprobs[j]
    for j in range(dlogits.shape[0]):
        dlogits[j] *= dprobs[j] - row_delta
    return row_delta


@njit(cache=True, parallel=True)
def _forward_rows(q, k_t, v, bias, has_bias, scale, out, logsumexp):
    batch, heads, n_queries, _ = q.shape
    n_keys, value_dim = v.shape[2], v.shape[3]
    for row in prange(batch * heads * n_queries):
        b, rest = divmod(np.int64(row), heads * n_queries)
        h, i = divmod(rest, n_queries)
        probs = np.empty(n_keys)
        _logits_row(q, k_t, bias, has_bias, scale, b, h, i, probs)
        row_max = -np.inf
        for j in range(n_keys):
            if probs[j] > row_max:
                row_max = probs[j]
        total = 0.0
        for j in range(n_keys):
            probs[j] = math.exp(probs[j] - row_max)
            total += probs[j]
        acc = np.zeros(value_dim)
        for j in range(n_keys):
            p = probs[j] / total
            for c in range(value_dim):
                acc[c] += p * v[b, h, j, c]
        for c in range(value_dim):
            out[b, h, i, c] = acc[c]
        logsumexp[b, h, i] = row_max + math.log(total)


@njit(cache=True, parallel=True)
def _backward_query_rows(dout, q, k, k_t, v_t, bias, has_bias, scale, logsumexp, dq, delta):
    batch, heads, n_queries, head_dim = q.shape
    n_keys = k.shape[2]
    for row in prange(batch * heads * n_queries):
        b, rest = divmod(np.int64(row), heads * n_queries)
        h, i = divmod(rest, n_queries)
        dlogits = np.empty(n_keys)
        dprobs = np.empty(n_keys)
        delta[b, h, i] = _query_row_gradient(dout, q, k_t, v_t, bias, has_bias, scale, logsumexp[b, h, i],
                                             b, h, i, dlogits, dprobs)
        acc = np.zeros(head_dim)
        for j in range(n_keys):
            for c in range(head_dim):
                acc[c] += dlogits[j] * k[b, h, j, c]
        for c in range(head_dim):
            dq[b, h, i, c] = scale * acc[c]


@njit(cache=True, parallel=True)
def _backward_key_rows(dout, dout_t, q, q_t, k, v, bias, has_bias, scale, logsumexp, delta, dk, dv):
    batch, heads, n_queries, head_dim = q.shape
    n_keys, value_dim = v.shape[2], v.shape[3]
    for row in prange(batch * heads * n_keys):
        b, rest = divmod(np.int64(row), heads * n_keys)
        h, j = divmod(rest, n_keys)
        probs = np.empty(n_queries)
        dprobs = np.empty(n_queries)
        _logits_column(k, q_t, bias, has_bias, scale, b, h, j, probs)
        _products(v, b, h, j, dout_t, dprobs)
        acc_k = np.zeros(head_dim)
        acc_v = np.zeros(value_dim)
        for i in range(n_queries):
            p = math.exp(probs[i] - logsumexp[b, h, i])
            dlogit = p * (dprobs[i] - delta[b, h, i])
            for c in range(value_dim):
                acc_v[c] += p * dout[b, h, i, c]
            for c in range(head_dim):
                acc_k[c] += dlogit * q[b, h, i, c]
        for c in range(head_dim):
            dk[b, h, j, c] = scale * acc_k[c]
        for c in range(value_dim):
            dv[b, h, j, c] = acc_v[c]


@njit(cache=True, parallel=True)
def _backward_bias_rows(dout, q, k_t, v_t, bias, scale, logsumexp, dbias):
    batch, heads, n_queries, _ = q.shape
    n_keys = k_t.shape[3]
    bias_batch, bias_heads, bias_queries, bias_keys = dbias.shape
    for row in prange(bias_batch * bias_heads * bias_queries):
        bb, rest = divmod(np.int64(row), bias_heads * bias_queries)
        hb, ib = divmod(rest, bias_queries)
        # the (b, h, i) that read this bias row: one index on a full axis, all on a broadcast one
        b_first, b_stop = (bb, bb + 1) if bias_batch > 1 else (0, batch)
        h_first, h_stop = (hb, hb + 1) if bias_heads > 1 else (0, heads)
        i_first, i_stop = (ib, ib + 1) if bias_queries > 1 else (0, n_queries)
        dlogits = np.empty(n_keys)
        dprobs = np.empty(n_keys)
        acc = np.zeros(bias_keys)
        for b in range(b_first, b_stop):
            for h in range(h_first, h_stop):
                for i in range(i_first, i_stop):
                    _query_row_gradient(dout, q, k_t, v_t, bias, True, scale, logsumexp[b, h, i],
                                        b, h, i, dlogits, dprobs)
                    for j in range(n_keys):
                        acc[j * (bias_keys > 1)] += dlogits[j]
        for j in range(bias_keys):
            dbias[bb, hb, ib, j] = acc[j]


def _bias_4d(bias, dtype):
    """The bias as a C-contiguous 4-D array (leading axes of size 1); a 1-element stand-in for None."""
    if bias is None:
        return np.zeros((1, 1, 1, 1), dtype=dtype)
    bias = np.ascontiguousarray(bias)
    return bias.reshape((1,) * (4 - bias.ndim) + bias.shape)


def _transposed(a):
    """``(B, h, N, c)`` -> C-contiguous ``(B, h, c, N)``."""
    return np.ascontiguousarray(np.swapaxes(a, 2, 3))


def forward(q, k, v, bias, scale):
    """-> ``(out (B, h, Nq, dv), logsumexp (B, h, Nq) float64)``."""
    q, v = np.ascontiguousarray(q), np.ascontiguousarray(v)
    out = np.empty(q.shape[:3] + v.shape[3:], dtype=q.dtype)
    logsumexp = np.empty(q.shape[:3], dtype=np.float64)
    _forward_rows(q, _transposed(k), v, _bias_4d(bias, q.dtype), bias is not None, float(scale), out, logsumexp)
    return out, logsumexp


def backward(dout, q, k, v, bias, scale, logsumexp):
    """-> ``(dq, dk, dv, dbias)``, ``dbias`` of ``bias.shape`` or None."""
    dout, q, k, v = (np.ascontiguousarray(a) for a in (dout, q, k, v))
    k_t, v_t = _transposed(k), _transposed(v)
    bias4 = _bias_4d(bias, q.dtype)
    scale = float(scale)
    dq = np.empty_like(q)
    delta = np.empty(q.shape[:3], dtype=np.float64)
    _backward_query_rows(dout, q, k, k_t, v_t, bias4, bias is not None, scale, logsumexp, dq, delta)
    dk = np.empty_like(k)
    dv = np.empty_like(v)
    _backward_key_rows(dout, _transposed(dout), q, _transposed(q), k, v, bias4, bias is not None, scale,
                       logsumexp, delta, dk, dv)
    if bias is None:
        return dq, dk, dv, None
    dbias = np.empty_like(bias4)
    _backward_bias_rows(dout, q, k_t, v_t, bias4, scale, logsumexp, dbias)
    return dq, dk, dv, dbias.reshape(bias.shape)
