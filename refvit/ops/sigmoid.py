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

import numpy as np

from refvit.ops import _elementwise as elementwise

OP = "sigmoid"
DIFFERENTIABLE = ("x",)


def forward(x, backend=None):
    """``sigmoid(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
    return elementwise.forward(OP, x, backend, _forward_numpy, save="out")


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    return elementwise.backward(OP, dout, cache, _backward_numpy)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 3.0,), {}


def stable_sigmoid(x):
    """sigma(x) of a NumPy array, without overflow at any |x| (also used by ``silu``)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def _forward_numpy(x):
    return stable_sigmoid(x)


def _backward_numpy(dout, out):
    return dout * out * (1.0 - out)
