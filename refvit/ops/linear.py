r"""Affine map of the last axis, as ``torch.nn.functional.linear(x, weight, bias)``.

Shapes: ``x (..., in)``, ``weight (out, in)`` (PyTorch's layout), ``bias (out,)`` or None
-> ``y (..., out)``. Any number of leading (batch) axes, including none.

Forward, for each row :math:`x \in \mathbb{R}^{in}`:

.. math::  y = x W^\top + b,\qquad y_o = \sum_i x_i W_{oi} + b_o

Backward, with :math:`G = \partial L/\partial y` and the rows stacked into matrices
:math:`X (n, in)`, :math:`G (n, out)`:

.. math::  \frac{\partial L}{\partial X} = G W,\qquad \frac{\partial L}{\partial W} = G^\top X,
           \qquad \frac{\partial L}{\partial b} = \sum_{\text{rows}} G

The gradient of ``bias`` is ``None`` when ``bias`` was ``None``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_optional_array, check_same_dtype, check_shape
from refvit.ops import _dispatch as dispatch

OP = "linear"
DIFFERENTIABLE = ("x", "weight", "bias")


class Cache(NamedTuple):
    x: np.ndarray
    weight: np.ndarray
    has_bias: bool
    out_shape: tuple
    backend: str


def forward(x, weight, bias=None, backend=None):
    """``linear(x, weight, bias)`` -> ``(y, cache)``; see the module docstring for the math."""
    backend = dispatch.resolve(OP, backend)
    x, weight, bias = check_arguments(OP, x, weight, bias, backend)
    y = dispatch.run(OP, backend, "forward", _forward_numpy, (x, weight, bias))
    out_shape = tuple(x.shape)[:-1] + (tuple(weight.shape)[0],)
    return y, Cache(x, weight, bias is not None, out_shape, backend)


def check_arguments(op, x, weight, bias, backend):
    """The checked ``(x, weight, bias)`` of a linear map named ``op`` (also ``linear_gelu``'s): ``x (..., in)``,
    ``weight (out, in)``, ``bias (out,)`` or None, one float dtype."""
    x = check_array(op, "x", x, backend, min_ndim=1)
    weight = check_array(op, "weight", weight, backend, ndim=2)
    check_shape(op, "weight", weight, (None, tuple(x.shape)[-1]))
    bias = check_optional_array(op, "bias", bias, backend)
    if bias is not None:
        check_shape(op, "bias", bias, (tuple(weight.shape)[0],))
    check_same_dtype(op, x=x, weight=weight, bias=bias)
    return x, weight, bias


def backward(dout, cache):
    """``dout (..., out)`` -> ``(dx (..., in), dweight (out, in), dbias (out,) or None)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, _Like(cache.out_shape, cache.x.dtype))
    dx, dweight, dbias = dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.x, cache.weight))
    return dx, dweight, (dbias if cache.has_bias else None)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)), {}


class _Like(NamedTuple):
    """The output's shape and dtype, for checking ``dout`` without keeping the output."""
    shape: tuple
    dtype: np.dtype


def _forward_numpy(x, weight, bias):
    y = x @ weight.T
    return y if bias is None else y + bias


def _backward_numpy(dout, x, weight):
    rows = math.prod(x.shape[:-1])
    rows_x = x.reshape(rows, x.shape[-1])
    rows_dout = dout.reshape(rows, dout.shape[-1])
    dx = dout @ weight
    dweight = rows_dout.T @ rows_x
    dbias = rows_dout.sum(axis=0)
    return dx, dweight, dbias
