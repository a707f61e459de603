r"""Stripe attention with LePE on the CPU, one window at a time with BLAS products.

Windows of at most :data:`refvit.kernels.cpu.stripe_small.FORWARD_TOKENS` tokens (forward) or
:data:`~refvit.kernels.cpu.stripe_small.BACKWARD_TOKENS` (backward) go to the loop kernels of
:mod:`refvit.kernels.cpu.stripe_small` instead, which take 64 windows side by side: on cswin_nano's windows
(16, 8, 2, 1 tokens, d = 16, batch 64) the 11 calls of a forward took 3.2 ms instead of 7.3-7.9 and
forward + backward 9.6-9.7 ms instead of 18.0-20.1 (``python examples/stripe_shapes.py --cpu-time
--repeat 7``, one thread, float32, 3 runs alternating with the BLAS-only kernels; PyTorch's port 5.5-5.6
and 19.5-20.6 ms). Both kernels save the same log-sum-exp, so either backward follows either forward.
The BLAS kernels, for larger windows (cswin_tiny's 49 to 98 tokens):

The ``prange`` of both kernels runs over the windows ``(batch, head, window-row, window-col)``; an
iteration copies its window's tokens into contiguous ``(n, d)`` scratch tiles (``n = sh*sw``, tokens
row-major inside the window), works on them with ``np.dot`` (which Numba hands to BLAS, as the NumPy
reference's ``@`` does) and writes its results back into that window's rows of the
``(B, heads, H, W, d)`` outputs. A window's keys are read only by its own queries, so every output
element, ``dk`` and ``dv`` included, is written by one iteration: no races and no reduction across
threads. Queries are taken in tiles of at most ``tile_rows`` rows (:func:`_tile_rows`), which bounds the
``(rows, n)`` scratch for very large windows; a typical CSWin window is one tile.

* ``_forward_windows``: ``S = Q K^T`` (BLAS), per row in place ``S_ij = scale S_ij``, ``m_i = max_j``,
  ``E_ij = exp(S_ij - m_i)`` (:func:`refvit.kernels.cpu.vector_math.exp_shifted`); one product
  ``E (V | 1)`` gives ``E V`` and the row sums ``l_i``; ``A_i = (E V)_i / l_i`` in float64, plus the
  bias and the nine LePE taps gathered from the value tile, rounded once on store. Saves
  ``lse_i = m_i + log l_i`` (float64, ``(B, heads, H, W)``).
* ``_backward_windows``: ``P = exp(scale Q K^T - lse)``, ``dP = G V^T`` (BLAS),
  ``delta_i = sum_j P_ij dP_ij`` (float64), ``D = scale P (dP - delta)``, then ``dq = D K``,
  ``dk = D^T Q``, ``dv = P^T G`` (BLAS; later query tiles add to ``dk``, ``dv``), the LePE transpose
  gathered from the gradient tile into ``dv``, and the window's share of ``dlepe_weight`` and
  ``dlepe_bias`` (float64) into its own slot of a per-window buffer, summed afterwards.

Memory kept for backward beyond the inputs: the log-sum-exp (float64, ``(B, heads, H, W)``), never the
``(n, n)`` probabilities of a window. Scratch per thread: ``O(n d + tile_rows n)``.
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu import stripe_small
from refvit.kernels.cpu.attention import _row_dot, _row_max
from refvit.kernels.cpu.stripe_tiles import _add_lepe, _gather, _lepe_partials, _scatter
from refvit.kernels.cpu.vector_math import exp_shifted

# Scratch elements of one ``(rows, n)`` tile of logits: larger windows are split into query tiles.
TILE_ELEMENTS = 1 << 16


class Stripes(NamedTuple):
    """The window geometry: ``stripe_h x stripe_w`` tokens a window, queries in tiles of ``tile_rows``."""
    stripe_h: int
    stripe_w: int
    tile_rows: int


class Inputs(NamedTuple):
    """What the backward reads: ``dout``, ``q``, ``k``, ``v`` ``(B, heads, H, W, d)`` (C-contiguous),
    the forward's ``logsumexp (B, heads, H, W)`` (float64), the LePE ``taps (heads, 3, 3, d)`` with
    ``has_lepe``, and ``scale``."""
    dout: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    logsumexp: np.ndarray
    taps: np.ndarray
    has_lepe: bool
    scale: float


class Gradients(NamedTuple):
    """What the backward writes: ``dq``, ``dk``, ``dv`` (shape of ``q``) and the per-window LePE partials
    ``dtaps_windows (windows, 3, 3, d)``, ``dbias_windows (windows, d)`` (float64)."""
    dq: np.ndarray
    dk: np.ndarray
    dv: np.ndarray
    dtaps_windows: np.ndarray
    dbias_windows: np.ndarray


@njit(cache=True)
def _window(index, heads, window_rows, window_cols, stripe_h, stripe_w):
    """Flat ``prange`` index over ``(batch, head, window-row, window-col)`` -> ``(b, head, top, left)``."""
    window_col = index % window_cols
    index //= window_cols
    window_row = index % window_rows
    index //= window_rows
    return index // heads, index % heads, window_row * stripe_h, window_col * stripe_w


@njit(cache=True, parallel=True)
def _forward_windows(q, k, v, taps, bias, has_lepe, stripes, scale, out, logsumexp):
    stripe_h, stripe_w, tile_rows = stripes
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    n = stripe_h * stripe_w
    for index in prange(batch * heads * window_rows * window_cols):
        b, head, top, left = _window(np.int64(index), heads, window_rows, window_cols, stripe_h, stripe_w)
        queries = np.empty((stripe_h, stripe_w, head_dim), dtype=q.dtype)
        keys = np.empty((stripe_h, stripe_w, head_dim), dtype=q.dtype)
        values_and_ones = np.ones((stripe_h, stripe_w, head_dim + 1), dtype=q.dtype)
        _gather(q[b, head], top, left, queries)
        _gather(k[b, head], top, left, keys)
        _gather(v[b, head], top, left, values_and_ones[:, :, :head_dim])
        query_rows, key_rows = queries.reshape(n, head_dim), keys.reshape(n, head_dim)
        exps = np.empty((tile_rows, n), dtype=q.dtype)
        weighted = np.empty((tile_rows, head_dim + 1), dtype=q.dtype)
        powers = np.empty(n, dtype=q.dtype)
        result = np.empty((stripe_h, stripe_w, head_dim))
        result_rows = result.reshape(n, head_dim)
        lse_rows = np.empty(n)
        for first in range(0, n, tile_rows):
            rows = min(tile_rows, n - first)
            exps_t, weighted_t = exps[:rows], weighted[:rows]
            np.dot(query_rows[first:first + rows], key_rows.T, exps_t)
            for r in range(rows):
                row = exps_t[r]
                for t in range(n):
                    row[t] = scale * row[t]
                largest = _row_max(row)
                exp_shifted(row, largest, powers)
                lse_rows[first + r] = largest
            np.dot(exps_t, values_and_ones.reshape(n, head_dim + 1), weighted_t)
            for r in range(rows):
                total = float(weighted_t[r, head_dim])
                lse_rows[first + r] += np.log(total)
                for j in range(head_dim):
                    result_rows[first + r, j] = weighted_t[r, j] / total
        if has_lepe:
            for t in range(n):
                for j in range(head_dim):
                    result_rows[t, j] += bias[head, j]
            _add_lepe(values_and_ones[:, :, :head_dim], taps[head], 1, result)
        _scatter(result, top, left, out[b, head])
        _scatter(lse_rows.reshape(stripe_h, stripe_w, 1), top, left, logsumexp[b, head].reshape(height, width, 1))


@njit(cache=True, parallel=True)
def _backward_windows(inputs, stripes, grads):
    dout, q, k, v, logsumexp, taps, has_lepe, scale = inputs
    stripe_h, stripe_w, tile_rows = stripes
    dq, dk, dv, dtaps_windows, dbias_windows = grads
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    n = stripe_h * stripe_w
    for index in prange(batch * heads * window_rows * window_cols):
        b, head, top, left = _window(np.int64(index), heads, window_rows, window_cols, stripe_h, stripe_w)
        tiles = np.empty((4, stripe_h, stripe_w, head_dim), dtype=q.dtype)   # Q, K, V, G of the window
        queries, keys, values, grads = tiles[0], tiles[1], tiles[2], tiles[3]
        _gather(q[b, head], top, left, queries)
        _gather(k[b, head], top, left, keys)
        _gather(v[b, head], top, left, values)
        _gather(dout[b, head], top, left, grads)
        query_rows, key_rows = queries.reshape(n, head_dim), keys.reshape(n, head_dim)
        value_rows, grad_rows = values.reshape(n, head_dim), grads.reshape(n, head_dim)
        lse = np.empty((stripe_h, stripe_w, 1))
        _gather(logsumexp[b, head].reshape(height, width, 1), top, left, lse)
        lse_rows = lse.reshape(n)
        probs = np.empty((tile_rows, n), dtype=q.dtype)
        dlogits = np.empty((tile_rows, n), dtype=q.dtype)
        powers = np.empty(n, dtype=q.dtype)
        results = np.empty((3, stripe_h, stripe_w, head_dim), dtype=q.dtype)  # dq, dk, dv of the window
        dq_rows, dk_rows, dv_rows = (results[0].reshape(n, head_dim), results[1].reshape(n, head_dim),
                                     results[2].reshape(n, head_dim))
        dk_tile = np.empty((n, head_dim), dtype=q.dtype)
        dv_tile = np.empty((n, head_dim), dtype=q.dtype)
        for first in range(0, n, tile_rows):
            rows = min(tile_rows, n - first)
            probs_t, dlogits_t = probs[:rows], dlogits[:rows]
            np.dot(query_rows[first:first + rows], key_rows.T, probs_t)
            np.dot(grad_rows[first:first + rows], value_rows.T, dlogits_t)
            for r in range(rows):
                p_row, d_row = probs_t[r], dlogits_t[r]
                for t in range(n):
                    p_row[t] = scale * p_row[t]
                exp_shifted(p_row, lse_rows[first + r], powers)
                delta = _row_dot(p_row, d_row)
                for t in range(n):
                    d_row[t] = scale * (p_row[t] * (d_row[t] - delta))
            np.dot(dlogits_t, key_rows, dq_rows[first:first + rows])
            if first == 0:  # the first tile writes dk, dv; later ones add to them
                np.dot(dlogits_t.T, query_rows[:rows], dk_rows)
                np.dot(probs_t.T, grad_rows[:rows], dv_rows)
            else:
                np.dot(dlogits_t.T, query_rows[first:first + rows], dk_tile)
                np.dot(probs_t.T, grad_rows[first:first + rows], dv_tile)
                for t in range(n):  # loops, not `+=` on arrays: the same sums, less to compile
                    for j in range(head_dim):
                        dk_rows[t, j] += dk_tile[t, j]
                        dv_rows[t, j] += dv_tile[t, j]
        if has_lepe:
            _add_lepe(grads, taps[head], -1, results[2])
            _lepe_partials(grads, values, dtaps_windows[index], dbias_windows[index])
        _scatter(results[0], top, left, dq[b, head])
        _scatter(results[1], top, left, dk[b, head])
        _scatter(results[2], top, left, dv[b, head])


def _tile_rows(n_tokens):
    """Query rows per tile: the whole window when its ``(n, n)`` logits fit :data:`TILE_ELEMENTS`, else
    equal tiles of at least 8 rows within that bound."""
    most = max(8, TILE_ELEMENTS // n_tokens)
    n_tiles = -(-n_tokens // most)
    return -(-n_tokens // n_tiles)


def _stripes(stripe_size):
    """``stripe_size (sh, sw)`` -> :class:`Stripes`, with the query tile of :func:`_tile_rows`."""
    stripe_h, stripe_w = stripe_size
    return Stripes(stripe_h, stripe_w, _tile_rows(stripe_h * stripe_w))


def _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, dtype):
    """LePE parameters as taps ``(heads, 3, 3, d)`` and bias ``(heads, d)``; zeros (unused) when absent."""
    if lepe_weight is None:
        return np.zeros((heads, 3, 3, head_dim), dtype), np.zeros((heads, head_dim), dtype), False
    taps = np.ascontiguousarray(np.asarray(lepe_weight).reshape(heads, head_dim, 3, 3).transpose(0, 2, 3, 1))
    if lepe_bias is None:
        return taps, np.zeros((heads, head_dim), dtype), True
    return taps, np.ascontiguousarray(lepe_bias).reshape(heads, head_dim), True


def _window_count(shape, stripe_size):
    batch, heads, height, width = shape[:4]
    return batch * heads * (height // stripe_size[0]) * (width // stripe_size[1])


def forward(q, k, v, lepe_weight, lepe_bias, stripe_size, scale):
    """``-> (out, saved)``; ``saved`` is what :func:`backward` needs."""
    q, k, v = (np.ascontiguousarray(x) for x in (q, k, v))
    heads, head_dim = q.shape[1], q.shape[4]
    taps, bias, has_lepe = _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, q.dtype)
    out = np.empty_like(q)
    logsumexp = np.empty(q.shape[:4])
    if stripe_size[0] * stripe_size[1] <= stripe_small.FORWARD_TOKENS:
        stripe_small.forward(q, k, v, (taps, bias, has_lepe), stripe_size, float(scale), out, logsumexp)
        return out, (q, k, v, taps, has_lepe, logsumexp)
    _forward_windows(q, k, v, taps, bias, has_lepe, _stripes(stripe_size), float(scale), out, logsumexp)
    return out, (q, k, v, taps, has_lepe, logsumexp)


def backward(dout, saved, has_bias, stripe_size, scale):
    """``-> (dq, dk, dv, dlepe_weight, dlepe_bias)``."""
    q, k, v, taps, has_lepe, logsumexp = saved
    dout = np.ascontiguousarray(dout)
    batch, heads, head_dim = q.shape[0], q.shape[1], q.shape[4]
    if stripe_size[0] * stripe_size[1] <= stripe_small.BACKWARD_TOKENS:
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        dtaps, dbias = stripe_small.backward(Inputs(dout, q, k, v, logsumexp, taps, has_lepe, float(scale)),
                                             stripe_size, dq, dk, dv)
        return (dq, dk, dv) + _lepe_gradients(dtaps, dbias, has_bias, q.dtype)
    n_windows = _window_count(q.shape, stripe_size) if has_lepe else 1
    dtaps_windows = np.zeros((n_windows, 3, 3, head_dim))
    dbias_windows = np.zeros((n_windows, head_dim))
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _backward_windows(Inputs(dout, q, k, v, logsumexp, taps, has_lepe, float(scale)), _stripes(stripe_size),
                      Gradients(dq, dk, dv, dtaps_windows, dbias_windows))
    if not has_lepe:
        return dq, dk, dv, None, None
    # windows are ordered (batch, head, window): sum each head's windows over the batch
    dtaps = dtaps_windows.reshape(batch, heads, -1, 3, 3, head_dim).sum(axis=(0, 2))
    dbias = dbias_windows.reshape(batch, heads, -1, head_dim).sum(axis=(0, 2))
    return (dq, dk, dv) + _lepe_gradients(dtaps, dbias, has_bias, q.dtype)


def _lepe_gradients(dtaps, dbias, has_bias, dtype):
    """Per-head sums ``dtaps (heads, 3, 3, d)``, ``dbias (heads, d)`` (None: no LePE) -> ``(dweight, dbias)``."""
    if dtaps is None:
        return None, None
    heads, head_dim = dbias.shape
    dweight = dtaps.transpose(0, 3, 1, 2).reshape(heads * head_dim, 1, 3, 3).astype(dtype)
    return dweight, (dbias.reshape(heads * head_dim).astype(dtype) if has_bias else None)
