r"""Elementwise sum with NumPy broadcasting.

Shapes: ``a (...a)``, ``b (...b)`` broadcastable -> ``out = broadcast_shapes(a.shape, b.shape)``.

Forward, with :math:`\bar a, \bar b` the inputs broadcast to the output's shape:

.. math::  y = \bar a + \bar b

Backward: each input element was copied to every output position it broadcasts to, so its
gradient is the sum of ``dout`` over those positions, i.e. over the leading axes ``a`` lacks and
over the axes where ``a`` has size 1 and the output does not:

.. math::  \frac{\partial L}{\partial a} = \operatorname{sum\_to}_{a}\!\left(\frac{\partial L}{\partial y}\right),
           \qquad \frac{\partial L}{\partial b} = \operatorname{sum\_to}_{b}\!\left(\frac{\partial L}{\partial y}\right)

Both gradients have exactly the shapes of ``a`` and ``b`` (size-1 axes and lower rank kept).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_same_dtype, fail
from refvit.ops import _dispatch as dispatch

OP = "add"
DIFFERENTIABLE = ("a", "b")


class OutputSpec(NamedTuple):
    """Shape and dtype of the output, what ``backward`` checks ``dout`` against."""
    shape: tuple
    dtype: np.dtype


class Cache(NamedTuple):
    a_shape: tuple
    b_shape: tuple
    out: OutputSpec
    backend: str


def forward(a, b, backend=None):
    """``a + b`` with broadcasting -> ``(out, cache)``."""
    backend = dispatch.resolve(OP, backend)
    a = check_array(OP, "a", a, backend)
    b = check_array(OP, "b", b, backend)
    dtype = check_same_dtype(OP, a=a, b=b)
    out_shape = broadcast_shape(OP, a, b)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (a, b), kernel_args=(a, b, out_shape))
    return out, Cache(tuple(a.shape), tuple(b.shape), OutputSpec(out_shape, dtype), backend)


def backward(dout, cache):
    """``dout (out)`` -> ``(da (a.shape), db (b.shape))``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.a_shape, cache.b_shape))


def example(rng):
    """Small float64 inputs for ``refvit check``, a bias-like ``b`` broadcast over ``a``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 1))), {}


def broadcast_shape(op, a, b):
    """The shape ``a`` and ``b`` broadcast to; ``ValueError`` naming both shapes if they do not."""
    try:
        return tuple(np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))
    except ValueError:
        fail(op, "a, b", "shapes that broadcast together", f"shapes {tuple(a.shape)} and {tuple(b.shape)}")


def sum_to_shape(grad, shape):
    """Sum ``grad`` over the axes along which an array of ``shape`` was broadcast; result of ``shape``."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + axis for axis, size in enumerate(shape) if size == 1 and grad.shape[lead + axis] != 1)
    return np.asarray(np.sum(grad, axis=axes, keepdims=True)).reshape(shape)  # asarray: a 0-d sum is a scalar


def _forward_numpy(a, b):
    return np.asarray(a + b)  # 0-d + 0-d gives a NumPy scalar


def _backward_numpy(dout, a_shape, b_shape):
    return sum_to_shape(dout, a_shape), sum_to_shape(dout, b_shape)
