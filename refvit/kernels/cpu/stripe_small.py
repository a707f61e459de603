r"""Stripe attention with LePE on the CPU for small windows: loops across blocks of windows.

For windows of at most :data:`FORWARD_TOKENS` tokens (forward) or :data:`BACKWARD_TOKENS` (backward)
(``cswin_nano`` runs windows of 16, 8, 2 and 1 tokens) a BLAS call per tiny ``(n, n)`` product, and loops
over ``n`` or ``d`` too short for LLVM to vectorise, cost more than the arithmetic. These kernels take up to
:data:`LANES` windows of one head at a time, side by side in lane tiles ``(sh, sw, d, lanes)``
(:mod:`refvit.kernels.cpu.stripe_lanes`), and run every loop's innermost iteration across the windows.
The ``prange`` runs over these blocks (windows ordered (head, batch, window-row, window-col)). A window's
results do not depend on its block or lane, and a block's share of ``dlepe_weight`` and ``dlepe_bias``
(float64, lanes summed in order) goes into its own slot, summed afterwards: the results do not depend on
the number of threads.

The arithmetic is that of :mod:`refvit.kernels.cpu.stripe_attention`, one query row ``i`` at a time:

* ``_forward_blocks``: ``s_t = scale (q_i . k_t)`` (summed over ``d`` in the inputs' dtype, as BLAS
  does), ``m = max_t s_t``, ``E_t = exp(s_t - m)`` (:func:`refvit.kernels.cpu.vector_math.exp_shifted`),
  ``l = sum_t E_t`` (float64), ``sum_t E_t v_t`` (the inputs' dtype), ``A_i`` its quotient by ``l`` in
  float64, plus the bias and the LePE taps, rounded once on store; ``lse_i = m + log l``.
* ``_backward_blocks``: ``P_t = exp(scale q_i . k_t - lse_i)``, ``dP_t = g_i . v_t``,
  ``delta = sum_t P_t dP_t`` (float64), ``D_t = scale P_t (dP_t - delta)``, ``dq_i = sum_t D_t k_t``;
  with ``P`` and ``D`` of all rows kept (``(n, n, lanes)``), ``dk_t = sum_i D_it q_i`` and
  ``dv_t = sum_i P_it g_i`` (the inputs' dtype, as the BLAS kernel), then the LePE transpose into ``dv``
  and the window's LePE parameter gradients (float64).
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.stripe_lanes import (
    _add_lepe_lanes,
    _gather_lanes,
    _lane_windows,
    _lepe_partials_lanes,
    _scatter_lanes,
    _sum_lanes,
)
from refvit.kernels.cpu.vector_math import exp_shifted

# Windows of at most this many tokens take these kernels, forward and backward; larger ones the BLAS
# kernels. Measured on cswin_nano's shapes (python examples/stripe_shapes.py --cpu-time --repeat 7
# --filter cswin_nano --path blas / --path loops / default; one thread, float32, d = 16, 3 alternating runs):
# 16-token windows, forward 0.71-0.77 ms here against 1.13-1.24 with BLAS, but forward + backward 2.36-2.41 ms
# here against 2.05-2.32 with the BLAS backward; windows of 8, 2, 1 tokens faster here both ways (forward
# + backward of all 11 calls of a cswin_nano forward: 9.3-9.7 ms against 19.5-20.0 with BLAS alone).
FORWARD_TOKENS = 16
BACKWARD_TOKENS = 8
# Windows side by side in one block: the innermost loop's length (LLVM vectorises it 8 or 4 wide,
# several vectors at a time, so it must be a few dozen long to leave its scalar remainder loop).
LANES = 64


@njit(cache=True)
def _dots(rows, i, columns, out):
    """``out[t, w] = sum_j rows[i, j, w] columns[t, j, w]`` in ``out``'s dtype (tiles ``(n, d, lanes)``)."""
    n, head_dim, lanes = columns.shape
    for t in range(n):
        total = out[t]
        for w in range(lanes):
            total[w] = 0.0
        for j in range(head_dim):
            left, right = rows[i, j], columns[t, j]
            for w in range(lanes):
                total[w] += left[w] * right[w]


@njit(cache=True)
def _weighted_sum(weights, values, j, out):
    """``out[w] = sum_t weights[t, w] values[t, j, w]`` in ``out``'s dtype (that of the inputs, as BLAS
    sums); ``weights (n, lanes)``, ``values (n, d, lanes)``."""
    n, lanes = weights.shape
    for w in range(lanes):
        out[w] = 0.0
    for t in range(n):
        weight, value = weights[t], values[t, j]
        for w in range(lanes):
            out[w] += weight[w] * value[w]


@njit(cache=True)
def _lane_max(rows, out):
    """``out[w] = max_t rows[t, w]`` (NaN entries skipped, as :func:`refvit.kernels.cpu.attention._row_max`)."""
    n, lanes = rows.shape
    for w in range(lanes):
        out[w] = -np.inf
    for t in range(n):
        row = rows[t]
        for w in range(lanes):
            out[w] = row[w] if row[w] > out[w] else out[w]


@njit(cache=True, parallel=True)
def _forward_blocks(q, k, v, lepe, stripes, scale, out, logsumexp):
    taps, bias, has_lepe = lepe
    stripe_h, stripe_w = stripes
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    n, per_head = stripe_h * stripe_w, batch * window_rows * window_cols
    blocks_per_head = (per_head + LANES - 1) // LANES
    for index in prange(heads * blocks_per_head):
        bases = np.empty(LANES, dtype=np.int64)
        head, used = _lane_windows(index, q.shape[:4], stripes, bases)
        tiles = np.empty((3, stripe_h, stripe_w, head_dim, LANES), dtype=q.dtype)   # Q, K, V
        for slot, x in enumerate((q, k, v)):
            _gather_lanes(x.reshape(-1), width, bases, used, tiles[slot])
        queries, keys = tiles[0].reshape(n, head_dim, LANES), tiles[1].reshape(n, head_dim, LANES)
        values = tiles[2].reshape(n, head_dim, LANES)
        logits = np.empty((n, LANES), dtype=q.dtype)
        largest = np.empty(LANES, dtype=q.dtype)
        powers = np.empty(LANES, dtype=q.dtype)
        totals = np.empty(LANES)
        weighted = np.empty(LANES, dtype=q.dtype)
        result = np.empty((stripe_h, stripe_w, head_dim, LANES))
        result_rows = result.reshape(n, head_dim, LANES)
        lse = np.empty((stripe_h, stripe_w, 1, LANES))
        lse_rows = lse.reshape(n, LANES)
        for i in range(n):
            _dots(queries, i, keys, logits)
            for t in range(n):
                row = logits[t]
                for w in range(LANES):
                    row[w] = scale * row[w]
            _lane_max(logits, largest)
            for w in range(LANES):
                totals[w] = 0.0
            for t in range(n):
                row = logits[t]
                exp_shifted(row, largest, powers)
                for w in range(LANES):
                    totals[w] += row[w]
            for j in range(head_dim):
                _weighted_sum(logits, values, j, weighted)
                acc = result_rows[i, j]
                for w in range(LANES):
                    acc[w] = weighted[w] / totals[w]
            for w in range(LANES):
                lse_rows[i, w] = largest[w] + np.log(totals[w])
        if has_lepe:
            for t in range(n):
                for j in range(head_dim):
                    acc, shift = result_rows[t, j], float(bias[head, j])
                    for w in range(LANES):
                        acc[w] += shift
            _add_lepe_lanes(tiles[2], taps[head], 1, result)
        _scatter_lanes(result, width, bases, used, out.reshape(-1))
        _scatter_lanes(lse, width, bases, used, logsumexp.reshape(-1))


@njit(cache=True, parallel=True)
def _backward_blocks(inputs, stripes, grads):
    dout, q, k, v, logsumexp, taps, has_lepe, scale = inputs
    dq, dk, dv, dtaps_blocks, dbias_blocks = grads
    stripe_h, stripe_w = stripes
    batch, heads, height, width, head_dim = q.shape
    window_rows, window_cols = height // stripe_h, width // stripe_w
    n, per_head = stripe_h * stripe_w, batch * window_rows * window_cols
    blocks_per_head = (per_head + LANES - 1) // LANES
    for index in prange(heads * blocks_per_head):
        bases = np.empty(LANES, dtype=np.int64)
        head, used = _lane_windows(index, q.shape[:4], stripes, bases)
        tiles = np.empty((4, stripe_h, stripe_w, head_dim, LANES), dtype=q.dtype)   # Q, K, V, G
        for slot, x in enumerate((q, k, v, dout)):
            _gather_lanes(x.reshape(-1), width, bases, used, tiles[slot])
        queries, keys = tiles[0].reshape(n, head_dim, LANES), tiles[1].reshape(n, head_dim, LANES)
        values, grads_rows = tiles[2].reshape(n, head_dim, LANES), tiles[3].reshape(n, head_dim, LANES)
        lse = np.empty((stripe_h, stripe_w, 1, LANES))
        _gather_lanes(logsumexp.reshape(-1), width, bases, used, lse)
        lse_rows = lse.reshape(n, LANES)
        probs = np.empty((n, LANES), dtype=q.dtype)
        dlogits = np.empty((n, LANES), dtype=q.dtype)
        powers = np.empty(LANES, dtype=q.dtype)
        delta = np.empty(LANES)
        probs_t = np.empty((n, n, LANES), dtype=q.dtype)     # [t, i]: P and D of every query row
        dlogits_t = np.empty((n, n, LANES), dtype=q.dtype)
        results = np.empty((3, stripe_h, stripe_w, head_dim, LANES), dtype=q.dtype)   # dq, dk, dv
        dq_rows, dk_rows = results[0].reshape(n, head_dim, LANES), results[1].reshape(n, head_dim, LANES)
        dv_rows = results[2].reshape(n, head_dim, LANES)
        for i in range(n):
            _dots(queries, i, keys, probs)
            _dots(grads_rows, i, values, dlogits)
            for w in range(LANES):
                delta[w] = 0.0
            for t in range(n):
                p_row, d_row = probs[t], dlogits[t]
                for w in range(LANES):
                    p_row[w] = scale * p_row[w]
                exp_shifted(p_row, lse_rows[i], powers)
                for w in range(LANES):
                    delta[w] += float(p_row[w]) * float(d_row[w])
            for t in range(n):
                p_row, d_row = probs[t], dlogits[t]
                for w in range(LANES):
                    d_row[w] = scale * (p_row[w] * (d_row[w] - delta[w]))
            for j in range(head_dim):
                _weighted_sum(dlogits, keys, j, dq_rows[i, j])
            for t in range(n):
                p_row, d_row, p_column, d_column = probs[t], dlogits[t], probs_t[t, i], dlogits_t[t, i]
                for w in range(LANES):
                    p_column[w] = p_row[w]
                    d_column[w] = d_row[w]
        for t in range(n):
            for j in range(head_dim):
                _weighted_sum(dlogits_t[t], queries, j, dk_rows[t, j])
                _weighted_sum(probs_t[t], grads_rows, j, dv_rows[t, j])
        if has_lepe:
            _add_lepe_lanes(tiles[3], taps[head], -1, results[2])
            taps_lanes = np.empty((3, 3, head_dim, LANES))
            bias_lanes = np.empty((head_dim, LANES))
            _lepe_partials_lanes(tiles[3], tiles[2], taps_lanes, bias_lanes)
            _sum_lanes(taps_lanes, bias_lanes, dtaps_blocks[index], dbias_blocks[index])
        for slot, x in enumerate((dq, dk, dv)):
            _scatter_lanes(results[slot], width, bases, used, x.reshape(-1))


def _blocks_per_head(shape, stripe_size):
    batch, _, height, width = shape[:4]
    return -(-(batch * (height // stripe_size[0]) * (width // stripe_size[1])) // LANES)


def forward(q, k, v, lepe, stripe_size, scale, out, logsumexp):
    """Fills ``out`` and ``logsumexp``; ``lepe = (taps (heads, 3, 3, d), bias (heads, d), has_lepe)``."""
    _forward_blocks(q, k, v, lepe, tuple(stripe_size), scale, out, logsumexp)


def backward(inputs, stripe_size, dq, dk, dv):
    """Fills ``dq``, ``dk``, ``dv`` from ``inputs`` (:class:`refvit.kernels.cpu.stripe_attention.Inputs`)
    and returns the LePE gradients summed per head, ``dtaps (heads, 3, 3, d)``, ``dbias (heads, d)``
    (float64), or ``(None, None)`` without LePE."""
    heads, head_dim = inputs.q.shape[1], inputs.q.shape[4]
    blocks_per_head = _blocks_per_head(inputs.q.shape, stripe_size)
    slots = heads * blocks_per_head if inputs.has_lepe else 1
    dtaps_blocks, dbias_blocks = np.zeros((slots, 3, 3, head_dim)), np.zeros((slots, head_dim))
    _backward_blocks(inputs, tuple(stripe_size), (dq, dk, dv, dtaps_blocks, dbias_blocks))
    if not inputs.has_lepe:
        return None, None
    return (dtaps_blocks.reshape(heads, blocks_per_head, 3, 3, head_dim).sum(axis=1),
            dbias_blocks.reshape(heads, blocks_per_head, head_dim).sum(axis=1))
