r"""Relative position bias (CoAtNet, Swin): a learned table gathered by token offset.

Shapes: ``table (T, heads)`` with ``T = (2W_h - 1)(2W_w - 1)`` (timm's layout), ``window = (W_h, W_w)``
(an int means a square window); ``bias (heads, N, N)`` with ``N = W_h W_w`` tokens in row-major
order, token ``a`` at ``(a // W_w, a % W_w)``.

Forward, with :math:`(\delta_h, \delta_w)` the coordinate of query ``a`` minus that of key ``b``:

.. math::  \operatorname{idx}(a, b) = (\delta_h + W_h - 1)(2W_w - 1) + (\delta_w + W_w - 1),
           \qquad B_{h,a,b} = T_{\operatorname{idx}(a,b),\,h}

Backward: the gather becomes a scatter-add. Every table row ``t`` (one offset class) collects
the upstream gradient of all query-key pairs with that offset:

.. math::  \frac{\partial L}{\partial T_{t,h}} = \sum_{(a,b):\ \operatorname{idx}(a,b) = t} G_{h,a,b}
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import as_tuple, check_array, check_grad, fail
from refvit.ops import _dispatch as dispatch

OP = "relative_position_bias"
DIFFERENTIABLE = ("table",)


class Cache(NamedTuple):
    window: tuple
    heads: int
    dtype: np.dtype
    backend: str


def table_rows(window):
    """Rows of the table for ``window = (W_h, W_w)``: one per offset, ``(2W_h - 1)(2W_w - 1)``."""
    return (2 * window[0] - 1) * (2 * window[1] - 1)


def relative_position_index(window):
    """``index (N, N)`` of table rows: ``index[a, b] = (dh + W_h - 1)(2W_w - 1) + (dw + W_w - 1)``."""
    height, width = window
    rows, cols = np.divmod(np.arange(height * width), width)
    dh = rows[:, None] - rows[None, :]
    dw = cols[:, None] - cols[None, :]
    return (dh + height - 1) * (2 * width - 1) + (dw + width - 1)


def forward(table, window, backend=None):
    """``relative_position_bias(table, window)`` -> ``(bias (heads, N, N), cache)``."""
    backend = dispatch.resolve(OP, backend)
    window = as_tuple(OP, "window", window, 2, minimum=1)
    table = check_array(OP, "table", table, backend, ndim=2)
    rows = table_rows(window)
    if table.shape[0] != rows:
        fail(OP, "table", f"of shape ({rows}, heads): (2*{window[0]}-1)*(2*{window[1]}-1) rows for window {window}",
             f"shape {tuple(table.shape)}")
    bias = dispatch.run(OP, backend, "forward", _forward_numpy, (table, window))
    return bias, Cache(window, table.shape[1], np.dtype(table.dtype), backend)


def backward(dout, cache):
    """``dout (heads, N, N)`` -> ``(dtable (T, heads),)``."""
    dispatch.check_cache(OP, cache, Cache)
    tokens = cache.window[0] * cache.window[1]
    dout = check_grad(OP, dout, _like((cache.heads, tokens, tokens), cache.dtype))
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.window)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    window = (2, 3)
    return (rng.standard_normal((table_rows(window), 2)),), {"window": window}


def _like(shape, dtype):
    """A zero-cost stand-in with the output's shape and dtype (for checking ``dout``)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def _forward_numpy(table, window):
    index = relative_position_index(window)
    return np.ascontiguousarray(table[index].transpose(2, 0, 1))


def _backward_numpy(dout, window):
    index = relative_position_index(window)
    heads = dout.shape[0]
    dtable = np.zeros((table_rows(window), heads), dtype=dout.dtype)
    np.add.at(dtable, index.reshape(-1), dout.reshape(heads, -1).T)
    return dtable
