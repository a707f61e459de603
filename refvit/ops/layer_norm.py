r"""Layer normalisation over the last axis, as ``torch.nn.functional.layer_norm(x, (C,), w, b, eps)``.

Shapes: ``x (..., C)``, ``weight (C,)`` or None, ``bias (C,)`` or None -> ``y (..., C)``.

Forward, for each row :math:`x \in \mathbb{R}^C` (biased variance):

.. math::  \mu = \frac1C\sum_c x_c,\qquad \sigma^2 = \frac1C\sum_c (x_c - \mu)^2,\qquad
           r = \frac{1}{\sqrt{\sigma^2 + \epsilon}}

.. math::  \hat x_c = (x_c - \mu)\,r,\qquad y_c = w_c\,\hat x_c + b_c

Backward, with :math:`g = \partial L/\partial y` and :math:`\hat g_c = g_c w_c`
(:math:`\partial \hat x_c/\partial x_k = r(\delta_{ck} - \tfrac1C - \tfrac1C\hat x_c\hat x_k)`):

.. math::  \frac{\partial L}{\partial x_k} = r\Bigl(\hat g_k - \frac1C\sum_c \hat g_c
           - \hat x_k\,\frac1C\sum_c \hat g_c\,\hat x_c\Bigr)

.. math::  \frac{\partial L}{\partial w_c} = \sum_{\text{rows}} g_c\,\hat x_c,\qquad
           \frac{\partial L}{\partial b_c} = \sum_{\text{rows}} g_c

``weight=None`` means :math:`w = 1` and ``bias=None`` means :math:`b = 0`; their gradients are then ``None``.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from refvit._validate import (
    check_array,
    check_grad,
    check_optional_array,
    check_same_dtype,
    check_shape,
    describe,
    fail,
)
from refvit.ops import _dispatch as dispatch

OP = "layer_norm"
DIFFERENTIABLE = ("x", "weight", "bias")


class Cache(NamedTuple):
    x: np.ndarray
    mean: np.ndarray  # per row, shape x.shape[:-1] (the kernels keep their own float64 copy)
    rstd: np.ndarray  # 1 / sqrt(var + eps), per row
    weight: np.ndarray | None
    has_bias: bool
    backend: str


def forward(x, weight, bias, eps=1e-5, backend=None):
    """``layer_norm(x, weight, bias, eps)`` -> ``(y, cache)``; see the module docstring for the math."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend, min_ndim=1)
    channels = tuple(x.shape)[-1]
    if channels == 0:
        fail(OP, "x", "an array with at least 1 channel in its last axis", describe(x))
    weight = check_optional_array(OP, "weight", weight, backend)
    bias = check_optional_array(OP, "bias", bias, backend)
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None:
            check_shape(OP, name, param, (channels,))
    check_same_dtype(OP, x=x, weight=weight, bias=bias)
    eps = check_eps(OP, eps)
    y, mean, rstd = dispatch.run(OP, backend, "forward", _forward_numpy, (x, weight, bias, eps))
    return y, Cache(x, mean, rstd, weight, bias is not None, backend)


def backward(dout, cache):
    """``dout (..., C)`` -> ``(dx, dweight, dbias)``; ``dweight``/``dbias`` are None when that input was None."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.x)
    dx, dweight, dbias = dispatch.run(OP, cache.backend, "backward", _backward_numpy,
                                      (dout, cache.x, cache.mean, cache.rstd, cache.weight))
    return dx, (dweight if cache.weight is not None else None), (dbias if cache.has_bias else None)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    # x is drawn uniform, not normal: a checker that draws its upstream gradient from a generator
    # seeded like ``rng`` must not get an upstream gradient that is an affine function of x.
    return (rng.uniform(-2.0, 3.0, (2, 3, 5)), rng.standard_normal(5), rng.standard_normal(5)), {}


def check_eps(op, eps):
    """``eps`` is a real number >= 0; returned as a Python float."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        fail(op, "eps", "a real number >= 0", describe(eps), TypeError)
    if not eps >= 0.0:
        fail(op, "eps", "a real number >= 0", eps)
    return float(eps)


def _forward_numpy(x, weight, bias, eps):
    mean = np.mean(x, axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = centered * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def _backward_numpy(dout, x, mean, rstd, weight):
    x_hat = (x - mean) * rstd
    g_hat = dout if weight is None else dout * weight
    dx = rstd * (g_hat - np.mean(g_hat, axis=-1, keepdims=True)
                 - x_hat * np.mean(g_hat * x_hat, axis=-1, keepdims=True))
    rows = tuple(range(x.ndim - 1))
    dweight = np.sum(dout * x_hat, axis=rows)
    dbias = np.sum(dout, axis=rows)
    return dx, dweight, dbias
