r"""Rectified linear unit.

Shapes: ``x (...)`` -> ``out (...)``, elementwise.

Forward:

.. math::  y = \max(x, 0)

Backward, with the derivative at :math:`x = 0` taken as 0 (as PyTorch):

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,[x > 0]

A NaN input gives a NaN output, and its gradient passes ``dout`` through
(PyTorch zeroes the gradient only where the output is ``<= 0``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad
from refvit.ops import _dispatch as dispatch

OP = "relu"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    x: np.ndarray
    backend: str


def forward(x, backend=None):
    """``relu(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x,))
    return out, Cache(x, backend)


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.x)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.x)),)


def example(rng):
    """Small float64 inputs for ``refvit check``, kept away from the kink at 0: ``(args, kwargs)``."""
    x = rng.standard_normal((2, 3, 4))
    return (np.where(x >= 0.0, x + 0.1, x - 0.1),), {}


def _forward_numpy(x):
    return np.asarray(np.maximum(x, 0.0))  # np.maximum propagates NaN


def _backward_numpy(dout, x):
    # Zero where x <= 0; a NaN compares False and keeps its gradient, as in PyTorch.
    return np.asarray(np.where(x <= 0.0, 0.0, dout))
