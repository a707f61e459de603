r"""SiLU (swish): :math:`x\,\sigma(x)`.

Shapes: ``x (...)`` -> ``out (...)``, elementwise.

Forward, with the stable sigmoid of :mod:`refvit.ops.sigmoid`:

.. math::  y = x\,\sigma(x)

Backward, by the product rule with :math:`\sigma' = \sigma(1 - \sigma)` and :math:`s = \sigma(x)`:

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\; s\,\bigl(1 + x\,(1 - s)\bigr)

As in PyTorch, :math:`y(-\infty)` is NaN (:math:`-\infty \cdot 0`) and so is the gradient at
:math:`\pm\infty`.
"""
from __future__ import annotations

import numpy as np

from refvit.ops import _elementwise as elementwise
from refvit.ops.sigmoid import stable_sigmoid

OP = "silu"
DIFFERENTIABLE = ("x",)


def forward(x, backend=None):
    """``silu(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
    return elementwise.forward(OP, x, backend, _forward_numpy)


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    return elementwise.backward(OP, dout, cache, _backward_numpy)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 3.0,), {}


def _forward_numpy(x):
    return x * stable_sigmoid(x)


def _backward_numpy(dout, x):
    s = stable_sigmoid(x)
    return dout * s * (1.0 + x * (1.0 - s))
