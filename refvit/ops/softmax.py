r"""Softmax along one axis, stable at any logit scale.

Shapes: ``x (...)`` -> ``y (...)``; the normalised axis is ``axis`` (default the last).

Forward, for each row :math:`x` along ``axis`` (the row maximum :math:`m = \max_j x_j` is
subtracted first, which leaves :math:`y` unchanged and keeps every exponent :math:`\le 0`):

.. math::  y_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}

A logit of :math:`-\infty` gets weight 0; a row whose logits are all :math:`-\infty` has
:math:`m = -\infty`, :math:`x - m` is NaN and the row is NaN, as in PyTorch.

Backward, with the Jacobian :math:`\partial y_i / \partial x_k = y_i(\delta_{ik} - y_k)`:

.. math::  \frac{\partial L}{\partial x_k} = y_k\Bigl(g_k - \sum_i g_i\,y_i\Bigr),
           \qquad g = \frac{\partial L}{\partial y}
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_int
from refvit.ops import _dispatch as dispatch

OP = "softmax"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    y: np.ndarray
    axis: int
    backend: str


def forward(x, axis=-1, backend=None):
    """``softmax(x, axis)`` -> ``(y, cache)``; see the module docstring for the math."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend, min_ndim=1)
    axis = check_int(OP, "axis", axis, minimum=-x.ndim, maximum=x.ndim - 1) % x.ndim
    y = dispatch.run(OP, backend, "forward", _forward_numpy, (x, axis),
                     kernel_args=(x, *row_layout(x.shape, axis)))
    return y, Cache(y, axis, backend)


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.y)
    layout = row_layout(cache.y.shape, cache.axis)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.y, cache.axis),
                         kernel_args=(dout, cache.y, *layout)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 5, 3)) * 2.0,), {"axis": 1}


def row_layout(shape, axis):
    """``(outer, length, inner)``: a C-ordered array of ``shape`` seen as ``(outer, length, inner)``,
    whose rows along ``axis`` are ``[o, :, i]``. Kernels walk rows this way, so no transpose is needed."""
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, int(shape[axis]), inner


def _forward_numpy(x, axis):
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore"):
        shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _backward_numpy(dout, y, axis):
    return y * (dout - np.sum(dout * y, axis=axis, keepdims=True))
