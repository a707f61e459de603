r"""Hyperbolic tangent.

Shapes: ``x (...)`` -> ``out (...)``, elementwise.

Forward:

.. math::  y = \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}

Backward, from the saved output (:math:`\tanh' = 1 - \tanh^2`):

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,(1 - y^2)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad
from refvit.ops import _dispatch as dispatch

OP = "tanh"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    out: np.ndarray  # the output: the derivative is a function of it
    backend: str


def forward(x, backend=None):
    """``tanh(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
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
    return (rng.standard_normal((2, 3, 4)) * 1.5,), {}


def _forward_numpy(x):
    return np.asarray(np.tanh(x))


def _backward_numpy(dout, out):
    return np.asarray(dout * (1.0 - out * out))
