r"""Sums over axes on the CPU (the backward of add and mul, the forward of mean).

The kept and summed axes of ``x`` are merged into runs (pure Python, :func:`sum_layout`); the
models' sums fit ``kept, summed, kept``, i.e. ``x (K1, S, K2) -> (K1, K2)`` (a bias gradient
``(N, C) -> (C,)`` is ``(1, N, C)``, the mean over the tokens of ``(B, N, C)`` is ``(B, N, C)``).
:func:`sum_middle` sums fixed blocks of ``S`` rows in float64 in parallel, then adds the blocks
in order, so the result does not depend on the number of threads. A sum that does not fit
(alternating runs) goes to NumPy, in float64 as well.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from refvit.kernels._shapes import merged_runs

# Rows of S summed by one parallel task: enough work per task, and a fixed split (not one per
# thread) so that the float64 partial sums, and so the result, are the same on any thread count.
SUM_BLOCK_ROWS = 64


def sum_layout(shape, axes):
    """``(K1, S, K2)`` with ``x`` summed over ``axes`` equal to ``x.reshape(K1, S, K2).sum(1)``, or ``None``."""
    runs = merged_runs(tuple(shape), set(axes))
    kinds = [summed for _, _, summed in runs]
    if kinds not in ([], [True], [False], [True, False], [False, True], [False, True, False]):
        return None
    sizes = {"K1": 1, "S": 1, "K2": 1}
    position = "K1"
    for size, _, summed in runs:
        if summed:
            sizes["S"] = size
            position = "K2"
        else:
            sizes[position] = size
    return sizes["K1"], sizes["S"], sizes["K2"]


@njit(cache=True, parallel=True, error_model="numpy")
def sum_middle(x, out, scale):
    """``out[k1, k2] = scale * sum_s x[k1, s, k2]`` for ``x (K1, S, K2)``: fixed blocks of rows in
    float64, in parallel, then the blocks added in order."""
    k1_size, s_size, k2_size = x.shape
    blocks = max(1, (s_size + SUM_BLOCK_ROWS - 1) // SUM_BLOCK_ROWS)
    partial = np.zeros((k1_size, blocks, k2_size), np.float64)
    for task in prange(k1_size * blocks):
        k1 = task // blocks
        block = task - k1 * blocks
        acc = partial[k1, block]
        for s in range(block * SUM_BLOCK_ROWS, min(s_size, (block + 1) * SUM_BLOCK_ROWS)):
            row = x[k1, s]
            for k2 in range(k2_size):
                acc[k2] += row[k2]
    for k1 in prange(k1_size):
        for k2 in range(k2_size):
            total = 0.0
            for block in range(blocks):
                total += partial[k1, block, k2]
            out[k1, k2] = total * scale


def sum_to(x, axes, shape, scale=1.0):
    """``scale * x.sum(axes)`` reshaped to ``shape`` (the kept axes, in order), in ``x``'s dtype."""
    layout = sum_layout(tuple(x.shape), axes)
    if layout is None:
        total = np.sum(x, axis=tuple(axes), dtype=np.float64) * scale
        return np.asarray(total, dtype=x.dtype).reshape(shape)
    k1_size, s_size, k2_size = layout
    out = np.empty((k1_size, k2_size), x.dtype)
    sum_middle(np.ascontiguousarray(x).reshape(k1_size, s_size, k2_size), out, scale)
    return out.reshape(shape)
