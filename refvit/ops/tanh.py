r"""Hyperbolic tangent.

Shapes: ``x (...)`` -> ``out (...)``, elementwise.

Forward:

.. math::  y = \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}

Backward, from the saved output (:math:`\tanh' = 1 - \tanh^2`):

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,(1 - y^2)
"""
from __future__ import annotations

import numpy as np

from refvit.ops import _elementwise as elementwise

OP = "tanh"
DIFFERENTIABLE = ("x",)


def forward(x, backend=None):
    """``tanh(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
    return elementwise.forward(OP, x, backend, _forward_numpy, save="out")


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    return elementwise.backward(OP, dout, cache, _backward_numpy)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 1.5,), {}


def _forward_numpy(x):
    return np.tanh(x)


def _backward_numpy(dout, out):
    return dout * (1.0 - out * out)
