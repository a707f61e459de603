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

from refvit import kernels
from refvit._validate import check_array, check_grad
from refvit.backend import resolve_backend

OP = "tanh"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    out: np.ndarray
    backend: str


def forward(x, backend=None):
    """``tanh(x)`` -> ``(out, cache)``; ``out`` has the shape and dtype of ``x``."""
    backend = resolve_backend(backend, OP)
    x = check_array(OP, "x", x, backend)
    if backend == "numpy":
        out = np.asarray(_forward_numpy(x))  # a ufunc gives a NumPy scalar for a 0-d input
    else:
        out = kernels.load(backend, OP).forward(x)
    return out, Cache(out, backend)


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    dout = check_grad(OP, dout, cache.out)
    if cache.backend == "numpy":
        return (np.asarray(_backward_numpy(dout, cache.out)),)
    return (kernels.load(cache.backend, OP).backward(dout, cache.out),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 1.5,), {}


def _forward_numpy(x):
    return np.tanh(x)


def _backward_numpy(dout, out):
    return dout * (1.0 - out * out)
