r"""Attention on the CPU in tiles of query rows, with BLAS products: no ``(B, h, Nq, Nk)`` tensor is stored.

A tile is ``T`` consecutive query rows of one ``(b, head)``; ``T`` is chosen (:func:`_tile_rows`) so
that each product of a tile stays below OpenBLAS's threading threshold (``SERIAL_PRODUCT_SIZE``) and
runs on the calling ``prange`` thread. Products are ``np.dot`` on C-contiguous 2-D arrays (or their
transposes) in the input dtype, which Numba hands to BLAS, as the NumPy reference's ``@`` does.

* forward, ``prange`` over ``(b, head, tile)``: ``S_t = Q_t K^T`` (BLAS), then per row in place
  ``S_ij = scale S_ij + bias_ij``, ``m_i = max_j S_ij``, ``E_ij = exp(S_ij - m_i)``; one product
  ``E_t (V | 1)`` with ``v`` widened by a column of ones gives both ``E_t V`` and the row sums ``l_i``;
  ``out_i = (E V)_i / l_i`` and ``lse_i = m_i + log l_i`` (float64, ``(B, h, Nq)``) is saved.
* backward, ``prange`` over runs of consecutive ``(b, head)``; each ``(b, head)`` belongs to one run,
  which walks its query tiles: ``P_t = exp(S_t - lse)``, ``dP_t = dout_t V^T`` (BLAS),
  ``delta_i = sum_j P_ij dP_ij`` (float64), ``G_t = scale * P_t * (dP_t - delta)`` (``scale dS``),
  then ``dq_t = G_t K``, ``dK += G_t^T Q_t``, ``dV += P_t^T dout_t`` (BLAS; the first tile writes
  ``dk``, ``dv`` of its ``(b, head)``, later tiles add).
* ``dbias``: each ``dS_ij`` (float64) is added at its bias index into a float64 buffer of the bias
  shape padded to 4-D, which sums the broadcast query and key axes as it goes. When the bias has the
  full batch and head axes (or those are 1), each ``(b, head)`` owns its slots and one buffer serves
  all runs, one run per ``(b, head)``; when it is broadcast over batch or heads there is one run per
  thread, each with its own buffer, and the buffers are summed afterwards in run order. No element is
  written by two iterations at once.

The per-element passes are written to vectorise, since a scalar ``exp`` call or a serial reduction
per element would cost as much as the products: the exponentials are
:func:`refvit.kernels.cpu.vector_math.exp_shifted` (branch-free, in the input dtype, within two ulps),
and row maxima and sums keep four independent partial results.
"""
import math
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.vector_math import exp_shifted

# Multiply-adds (m n k) below which a BLAS product stays on the calling thread. OpenBLAS gives a product
# m n k / 262144 threads (65536 * GEMM_MULTITHREAD_THRESHOLD, 4 by default), so one below 2 * 262144.
# Larger products wake BLAS threads that compete with the prange threads for the same cores, which
# measured up to 20 times slower on a busy machine.
SERIAL_PRODUCT_SIZE = 2 * 262144 - 1


class Inputs(NamedTuple):
    """What the backward reads: ``dout (B, h, Nq, dv)``, ``q (B, h, Nq, d)``, ``k (B, h, Nk, d)``,
    ``v (B, h, Nk, dv)`` (C-contiguous, input dtype), ``bias`` (4-D, see :func:`_bias_4d`) with
    ``has_bias``, ``scale`` and the forward's ``logsumexp (B, h, Nq)`` (float64)."""
    dout: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    bias: np.ndarray
    has_bias: bool
    scale: float
    logsumexp: np.ndarray


class Gradients(NamedTuple):
    """What the backward writes: ``dq``, ``dk``, ``dv`` (shapes of ``q``, ``k``, ``v``) and
    ``dbias_buffers`` (float64, ``(buffers,) + bias.shape``)."""
    dq: np.ndarray
    dk: np.ndarray
    dv: np.ndarray
    dbias_buffers: np.ndarray


@njit(cache=True)
def _row_dot(x, y):
    """``sum_j x[j] y[j]`` in float64, as four interleaved partial sums (independent chains)."""
    n = x.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    for j in range(0, n - 3, 4):
        s0 += x[j] * y[j]
        s1 += x[j + 1] * y[j + 1]
        s2 += x[j + 2] * y[j + 2]
        s3 += x[j + 3] * y[j + 3]
    for j in range(n - n % 4, n):
        s0 += x[j] * y[j]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def _row_max(x):
    """``max_j x[j]`` (NaN entries are skipped) as four interleaved partial maxima."""
    n = x.shape[0]
    m0 = m1 = m2 = m3 = -np.inf
    for j in range(0, n - 3, 4):
        m0 = x[j] if x[j] > m0 else m0
        m1 = x[j + 1] if x[j + 1] > m1 else m1
        m2 = x[j + 2] if x[j + 2] > m2 else m2
        m3 = x[j + 3] if x[j + 3] > m3 else m3
    for j in range(n - n % 4, n):
        m0 = x[j] if x[j] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@njit(cache=True)
def _add_bias_and_scale(row, bias, has_bias, scale, b, h, i):
    """In place ``row[j] = S_ij = scale * row[j] + bias_ij``, where ``row`` holds ``(Q K^T)_i.``."""
    n_keys = row.shape[0]
    if not has_bias:
        for j in range(n_keys):
            row[j] = scale * row[j]
        return
    bias_row = bias[b * (bias.shape[0] > 1), h * (bias.shape[1] > 1), i * (bias.shape[2] > 1)]
    if bias.shape[3] > 1:
        for j in range(n_keys):
            row[j] = scale * row[j] + bias_row[j]
    else:
        for j in range(n_keys):
            row[j] = scale * row[j] + bias_row[0]


@njit(cache=True, parallel=True)
def _forward_tiles(q, k, v_and_ones, bias, has_bias, scale, tile_rows, out, logsumexp):
    """``v_and_ones`` is ``v`` with a column of ones appended: ``E (V | 1)`` gives ``E V`` and the row sums."""
    batch, heads, n_queries, _ = q.shape
    n_keys, value_dim = k.shape[2], out.shape[3]
    n_tiles = (n_queries + tile_rows - 1) // tile_rows
    for item in prange(batch * heads * n_tiles):
        bh, tile = divmod(np.int64(item), n_tiles)
        b, h = divmod(bh, heads)
        first = tile * tile_rows
        rows = min(tile_rows, n_queries - first)
        exps = np.empty((rows, n_keys), dtype=q.dtype)
        powers = np.empty(n_keys, dtype=q.dtype)
        row_max = np.empty(rows)
        weighted = np.empty((rows, value_dim + 1), dtype=q.dtype)
        np.dot(q[b, h, first:first + rows], k[b, h].T, exps)
        for r in range(rows):
            _add_bias_and_scale(exps[r], bias, has_bias, scale, b, h, first + r)
            row_max[r] = _row_max(exps[r])
            exp_shifted(exps[r], row_max[r], powers)
        np.dot(exps, v_and_ones[b, h], weighted)
        for r in range(rows):
            total = weighted[r, value_dim]
            for c in range(value_dim):
                out[b, h, first + r, c] = weighted[r, c] / total
            logsumexp[b, h, first + r] = row_max[r] + math.log(total)


@njit(cache=True)
def _tile_gradients(inputs, b, h, first, probs, dlogits, powers, dbias_slots):
    """For the tile's rows: ``probs = P_t`` and ``dlogits = scale * dS_t`` (input dtype); with a bias,
    adds ``dS_t`` (float64) at its bias indices into ``dbias_slots`` (the bias shape, 4-D)."""
    dout, q, k, v, bias, has_bias, scale, logsumexp = inputs
    rows, n_keys = probs.shape
    np.dot(q[b, h, first:first + rows], k[b, h].T, probs)
    np.dot(dout[b, h, first:first + rows], v[b, h].T, dlogits)
    key_axis = dbias_slots.shape[3] > 1
    for r in range(rows):
        i = first + r
        p_row, d_row = probs[r], dlogits[r]
        _add_bias_and_scale(p_row, bias, has_bias, scale, b, h, i)
        exp_shifted(p_row, logsumexp[b, h, i], powers)
        delta = _row_dot(p_row, d_row)
        if not has_bias:
            for j in range(n_keys):
                d_row[j] = scale * (p_row[j] * (d_row[j] - delta))
            continue
        slots = dbias_slots[b * (dbias_slots.shape[0] > 1), h * (dbias_slots.shape[1] > 1),
                            i * (dbias_slots.shape[2] > 1)]
        if key_axis:
            for j in range(n_keys):
                dlogit = p_row[j] * (d_row[j] - delta)
                slots[j] += dlogit
                d_row[j] = scale * dlogit
        else:
            for j in range(n_keys):
                dlogit = p_row[j] * (d_row[j] - delta)
                slots[0] += dlogit
                d_row[j] = scale * dlogit


@njit(cache=True, parallel=True)
def _backward_heads(inputs, tile_rows, n_runs, grads):
    """``prange`` over ``n_runs`` runs of consecutive ``(b, head)``; run ``c`` adds its bias gradient
    into ``grads.dbias_buffers[c]`` when there is a buffer per run, else into ``grads.dbias_buffers[0]``."""
    dout, q, k, v = inputs.dout, inputs.q, inputs.k, inputs.v
    dq, dk, dv, dbias_buffers = grads
    batch, heads, n_queries, head_dim = q.shape
    n_keys, value_dim = v.shape[2], v.shape[3]
    n_heads = batch * heads
    for run in prange(n_runs):
        dbias_slots = dbias_buffers[min(np.int64(run), dbias_buffers.shape[0] - 1)]
        probs = np.empty((tile_rows, n_keys), dtype=q.dtype)
        dlogits = np.empty((tile_rows, n_keys), dtype=q.dtype)
        powers = np.empty(n_keys, dtype=q.dtype)
        dk_tile = np.empty((n_keys, head_dim), dtype=q.dtype)
        dv_tile = np.empty((n_keys, value_dim), dtype=q.dtype)
        for bh in range(run * n_heads // n_runs, (run + 1) * n_heads // n_runs):
            b, h = divmod(np.int64(bh), heads)
            for first in range(0, n_queries, tile_rows):
                rows = min(tile_rows, n_queries - first)
                probs_t, dlogits_t = probs[:rows], dlogits[:rows]
                _tile_gradients(inputs, b, h, first, probs_t, dlogits_t, powers, dbias_slots)
                np.dot(dlogits_t, k[b, h], dq[b, h, first:first + rows])
                if first == 0:  # the first tile writes dk, dv; later ones add to them
                    np.dot(dlogits_t.T, q[b, h, :rows], dk[b, h])
                    np.dot(probs_t.T, dout[b, h, :rows], dv[b, h])
                else:
                    np.dot(dlogits_t.T, q[b, h, first:first + rows], dk_tile)
                    np.dot(probs_t.T, dout[b, h, first:first + rows], dv_tile)
                    dk[b, h] += dk_tile
                    dv[b, h] += dv_tile


def _tile_rows(n_queries, n_keys, width):
    """Query rows per tile, split evenly, so that each product of a tile has ``m n k`` at most
    ``SERIAL_PRODUCT_SIZE`` (``width``: the widest of ``d``, ``dv``, ``dv + 1``); at least 8 rows."""
    most = max(8, SERIAL_PRODUCT_SIZE // (n_keys * width))
    n_tiles = -(-n_queries // most)
    return -(-n_queries // n_tiles)


def _shared_bias_runs(n_heads):
    """Runs of ``(b, head)`` (each with its own ``dbias`` buffer) when the bias is shared: one per thread."""
    return min(n_heads, numba.get_num_threads())


def _bias_4d(bias, dtype):
    """The bias as a C-contiguous 4-D array (leading axes of size 1); a 1-element stand-in for None."""
    if bias is None:
        return np.zeros((1, 1, 1, 1), dtype=dtype)
    bias = np.ascontiguousarray(bias)
    return bias.reshape((1,) * (4 - bias.ndim) + bias.shape)


def forward(q, k, v, bias, scale):
    """-> ``(out (B, h, Nq, dv), logsumexp (B, h, Nq) float64)``."""
    q, k = np.ascontiguousarray(q), np.ascontiguousarray(k)
    v_and_ones = np.ones(v.shape[:3] + (v.shape[3] + 1,), dtype=q.dtype)
    v_and_ones[..., :-1] = v
    out = np.empty(q.shape[:3] + v.shape[3:], dtype=q.dtype)
    logsumexp = np.empty(q.shape[:3], dtype=np.float64)
    tile_rows = _tile_rows(q.shape[2], k.shape[2], max(q.shape[3], v.shape[3] + 1))
    _forward_tiles(q, k, v_and_ones, _bias_4d(bias, q.dtype), bias is not None, float(scale), tile_rows,
                   out, logsumexp)
    return out, logsumexp


def backward(dout, q, k, v, bias, scale, logsumexp):
    """-> ``(dq, dk, dv, dbias)``, ``dbias`` of ``bias.shape`` or None."""
    dout, q, k, v = (np.ascontiguousarray(a) for a in (dout, q, k, v))
    bias4 = _bias_4d(bias, q.dtype)
    batch, heads = q.shape[:2]
    n_heads = batch * heads
    # a bias with full batch and head axes: every slot is read by one (b, head) only
    owned = bias is None or ((bias4.shape[0] == batch or batch == 1) and (bias4.shape[1] == heads or heads == 1))
    n_runs = n_heads if owned else _shared_bias_runs(n_heads)
    dbias_buffers = np.zeros((1 if owned else n_runs,) + bias4.shape)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    tile_rows = _tile_rows(q.shape[2], k.shape[2], max(q.shape[3], v.shape[3]))
    _backward_heads(Inputs(dout, q, k, v, bias4, bias is not None, float(scale), logsumexp), tile_rows, n_runs,
                    Gradients(dq, dk, dv, dbias_buffers))
    if bias is None:
        return dq, dk, dv, None
    dbias = dbias_buffers[0] if dbias_buffers.shape[0] == 1 else dbias_buffers.sum(axis=0)
    return dq, dk, dv, dbias.astype(q.dtype).reshape(bias.shape)
