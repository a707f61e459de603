r"""Elementwise product with NumPy broadcasting.

Shapes: ``a (...a)``, ``b (...b)`` broadcastable -> ``out = broadcast_shapes(a.shape, b.shape)``.

Forward, with :math:`\bar a, \bar b` the inputs broadcast to the output's shape:

.. math::  y = \bar a \odot \bar b

Backward: the product rule at every output position, then, as in :mod:`refvit.ops.add`, a sum
over the positions each input element was broadcast to:

.. math::  \frac{\partial L}{\partial a} = \operatorname{sum\_to}_{a}\!\left(\frac{\partial L}{\partial y}\odot \bar b\right),
           \qquad \frac{\partial L}{\partial b} = \operatorname{sum\_to}_{b}\!\left(\frac{\partial L}{\partial y}\odot \bar a\right)

Both gradients have exactly the shapes of ``a`` and ``b``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_same_dtype
from refvit.ops import _dispatch as dispatch
from refvit.ops.add import OutputSpec, broadcast_shape, sum_to_shape

OP = "mul"
DIFFERENTIABLE = ("a", "b")


class Cache(NamedTuple):
    a: np.ndarray
    b: np.ndarray
    out: OutputSpec
    backend: str


def forward(a, b, backend=None):
    """``a * b`` with broadcasting -> ``(out, cache)``."""
    backend = dispatch.resolve(OP, backend)
    a = check_array(OP, "a", a, backend)
    b = check_array(OP, "b", b, backend)
    dtype = check_same_dtype(OP, a=a, b=b)
    out_shape = broadcast_shape(OP, a, b)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (a, b), kernel_args=(a, b, out_shape))
    return out, Cache(a, b, OutputSpec(out_shape, dtype), backend)


def backward(dout, cache):
    """``dout (out)`` -> ``(da (a.shape), db (b.shape))``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.a, cache.b))


def example(rng):
    """Small float64 inputs for ``refvit check``, a per-channel ``b`` broadcast over ``a``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)), rng.standard_normal((1, 4))), {}


def _forward_numpy(a, b):
    return np.asarray(a * b)  # 0-d * 0-d gives a NumPy scalar


def _backward_numpy(dout, a, b):
    return sum_to_shape(dout * b, a.shape), sum_to_shape(dout * a, b.shape)
