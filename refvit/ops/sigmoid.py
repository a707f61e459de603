r"""Logistic sigmoid, stable for any :math:`|x|`.

Shapes: ``x (...)`` -> ``out (...)``, elementwise.

Forward, in the two-branch form whose exponent is never positive, with
:math:`e = \exp(-|x|) \in (0, 1]`:

.. math::  y = \sigma(x) = \frac{1}{1 + e^{-x}} =
           \begin{cases} 1 / (1 + e) & x \ge 0 \\ e / (1 + e) & x < 0 \end{cases}

so neither branch overflows: :math:`\sigma(\pm\infty) = 1, 0` and NaN stays NaN.

Backward, from the saved output (:math:`\sigma' = \sigma(1 - \sigma)`):

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\, y\,(1 - y)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad
from refvit.ops import _dispatch as dispatch

OP = "sigmoid"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    out: np.ndarray  # the output: the derivative is a function of it
    backend: str


def forward(x, backend=None):
    """``sigmoid(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x,))
    return out, Cache(out, backend)


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.out)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 3.0,), {}


def stable_sigmoid(x):
    """sigma(x) of a NumPy array, without overflow at any |x| (also used by ``silu``)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def _forward_numpy(x):
    return np.asarray(stable_sigmoid(x))


def _backward_numpy(dout, out):
    return np.asarray(dout * out * (1.0 - out))
