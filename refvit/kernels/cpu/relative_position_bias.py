"""Relative position bias on the CPU.

* forward: ``prange`` over the output rows ``(h, a)``; each entry computes its table row from the
  coordinates of ``a`` and ``b`` (no index array is built).
* backward, gather form: ``prange`` over table rows (offset classes ``(dh, dw)``); a row visits
  exactly the query-key pairs with its offset, so each thread writes its own row of ``dtable``.
"""
import numpy as np
from numba import njit, prange



@njit(cache=True, parallel=True)
def _gather(table, window_height, window_width, bias):
    """bias[h, a, b] = table[(dh + Wh - 1) * (2Ww - 1) + (dw + Ww - 1), h], (dh, dw) = coord(a) - coord(b)."""
    heads = table.shape[1]
    tokens = window_height * window_width
    row_length = 2 * window_width - 1
    for row in prange(heads * tokens):
        h = row // tokens
        a = row % tokens
        ya = a // window_width
        xa = a % window_width
        for b in range(tokens):
            dh = ya - b // window_width
            dw = xa - b % window_width
            bias[h, a, b] = table[(dh + window_height - 1) * row_length + (dw + window_width - 1), h]


@njit(cache=True, parallel=True)
def _offset_class_sums(dout, window_height, window_width, dtable):
    """dtable[t, h] = sum of dout[h, a, b] over the pairs with coord(a) - coord(b) = offset(t)."""
    heads = dout.shape[0]
    row_length = 2 * window_width - 1
    for t in prange(dtable.shape[0]):
        dh = t // row_length - (window_height - 1)
        dw = t % row_length - (window_width - 1)
        for h in range(heads):
            acc = 0.0
            for ya in range(max(0, dh), min(window_height, window_height + dh)):
                for xa in range(max(0, dw), min(window_width, window_width + dw)):
                    a = ya * window_width + xa
                    b = (ya - dh) * window_width + (xa - dw)
                    acc += dout[h, a, b]
            dtable[t, h] = acc


def forward(table, window):
    table = np.ascontiguousarray(table)
    tokens = window[0] * window[1]
    bias = np.empty((table.shape[1], tokens, tokens), dtype=table.dtype)
    _gather(table, window[0], window[1], bias)
    return bias


def backward(dout, window):
    dout = np.ascontiguousarray(dout)
    dtable = np.empty(((2 * window[0] - 1) * (2 * window[1] - 1), dout.shape[0]), dtype=dout.dtype)
    _offset_class_sums(dout, window[0], window[1], dtable)
    return dtable
