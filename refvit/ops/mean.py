r"""Mean over axes.

Shapes: ``x (...)`` -> ``out``: ``x.shape`` without the reduced axes, or with them kept as size 1
when ``keepdims=True``. ``axis`` is an int, a tuple of ints (negative counts from the end) or
``None`` for all axes; :math:`n` is the number of elements averaged (the product of the reduced sizes).

Forward, over the set :math:`R` of reduced indices:

.. math::  y_k = \frac1n \sum_{r \in R} x_{k,r}

Backward: every averaged element contributes :math:`1/n`, so ``dout`` is divided by :math:`n` and
broadcast back along the reduced axes:

.. math::  \frac{\partial L}{\partial x_{k,r}} = \frac1n\,\frac{\partial L}{\partial y_k}

As ``np.mean``, the mean over zero elements is NaN.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, describe, fail
from refvit.ops import _dispatch as dispatch
from refvit.ops.add import OutputSpec

OP = "mean"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    x_shape: tuple
    axes: tuple
    count: int
    out: OutputSpec
    backend: str


def forward(x, axis, keepdims=False, backend=None):
    """Mean of ``x`` over ``axis`` -> ``(out, cache)``; see the module docstring."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend)
    axes = normalize_axes(OP, axis, x.ndim)
    if not isinstance(keepdims, (bool, np.bool_)):
        fail(OP, "keepdims", "a bool", describe(keepdims), TypeError)
    keepdims = bool(keepdims)
    count = math.prod(x.shape[a] for a in axes)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x, axes, keepdims, count))
    out_spec = OutputSpec(_reduced_shape(x.shape, axes, keepdims), x.dtype)
    return out, Cache(tuple(x.shape), axes, count, out_spec, backend)


def backward(dout, cache):
    """``dout (out)`` -> ``(dx (x.shape),)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy,
                         (dout, cache.x_shape, cache.axes, cache.count)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: a mean over the two spatial axes of a feature map."""
    return (rng.standard_normal((2, 3, 4, 5)), (1, 2)), {"keepdims": False}


def normalize_axes(op, axis, ndim):
    """``axis`` (int, tuple/list of ints, or None) -> sorted tuple of distinct non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            fail(op, "axis", "an integer, a tuple of integers or None", describe(axis), TypeError)
    for item in items:
        if not -ndim <= item < ndim:
            fail(op, "axis", f"axes in [{-ndim}, {ndim - 1}] for a {ndim}-D 'x'", repr(axis))
    axes = tuple(int(item) % ndim for item in items)
    if len(set(axes)) != len(axes):
        fail(op, "axis", "distinct axes", f"{axis!r} (the same axis twice)")
    return tuple(sorted(axes))


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if a in axes else size for a, size in enumerate(shape))
    return tuple(size for a, size in enumerate(shape) if a not in axes)


def _forward_numpy(x, axes, keepdims, count):
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 = NaN for an empty mean, as np.mean
        return np.asarray(np.sum(x, axis=axes, keepdims=keepdims) / count)


def _backward_numpy(dout, x_shape, axes, count):
    kept = np.reshape(dout, _reduced_shape(x_shape, axes, keepdims=True))
    return np.broadcast_to(kept / max(count, 1), x_shape).copy()
