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

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops.sigmoid import stable_sigmoid

OP = "silu"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    x: np.ndarray
    backend: str


def forward(x, backend=None):
    """``silu(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
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
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 3.0,), {}


def _forward_numpy(x):
    return np.asarray(x * stable_sigmoid(x))


def _backward_numpy(dout, x):
    s = stable_sigmoid(x)
    return np.asarray(dout * s * (1.0 + x * (1.0 - s)))
