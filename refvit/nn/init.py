r"""Parameter initialisation, PyTorch's defaults, drawn from :mod:`refvit.nn.random`.

Each function fills a ``Tensor``/``Parameter`` (its ``data``, in place) or a NumPy array
and returns it. Values are drawn in float64 and cast to the array's dtype.

* ``Linear``/``Conv2d`` weights: :func:`kaiming_uniform_` with ``a = sqrt(5)``, which is
  :math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`; biases the same bound.
* ``fan_in = shape[1] * prod(shape[2:])``, ``fan_out = shape[0] * prod(shape[2:])``.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
from scipy.special import ndtr, ndtri

from refvit.nn import random


_shapes_only = False


@contextlib.contextmanager
def shapes_only():
    """Build modules without drawing their initial values (arrays keep whatever they were allocated
    with, possibly uninitialised memory, and the random stream is not advanced): for counting parameters or reading shapes, e.g. in
    ``refvit models``. A model built inside it is not fit for training until weights are loaded."""
    global _shapes_only
    before, _shapes_only = _shapes_only, True
    try:
        yield
    finally:
        _shapes_only = before


def _array(target):
    return target.data if hasattr(target, "data") and hasattr(target, "requires_grad") else target


def _fill(target, values):
    if _shapes_only:
        return target
    array = _array(target)
    array[...] = values
    return target


def calculate_fan_in_and_fan_out(shape):
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need an array of at least 2 dimensions; got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """PyTorch's gains: ``relu`` sqrt(2), ``leaky_relu`` sqrt(2 / (1 + a^2)), ``tanh`` 5/3, linear ones 1."""
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity in ("linear", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    raise ValueError(f"calculate_gain: 'nonlinearity' must be relu, leaky_relu, tanh, sigmoid or linear; "
                     f"got {nonlinearity!r}")


def uniform_(target, a=0.0, b=1.0):
    """Fill with :math:`U(a, b)`."""
    if _shapes_only:
        return target
    return _fill(target, random.generator().uniform(a, b, np.shape(_array(target))))


def normal_(target, mean=0.0, std=1.0):
    """Fill with :math:`N(\\text{mean}, \\text{std}^2)`."""
    if _shapes_only:
        return target
    return _fill(target, mean + std * random.generator().standard_normal(np.shape(_array(target))))


def trunc_normal_(target, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill with :math:`N(\\text{mean}, \\text{std}^2)` cut to ``[a, b]`` (absolute bounds, as in
    PyTorch and timm; models call it with ``std=.02``). Inverse-CDF sampling."""
    if _shapes_only:
        return target
    low, high = ndtr((a - mean) / std), ndtr((b - mean) / std)
    u = random.generator().uniform(low, high, np.shape(_array(target)))
    return _fill(target, np.clip(mean + std * ndtri(u), a, b))


def constant_(target, value):
    return _fill(target, value)


def zeros_(target):
    return _fill(target, 0.0)


def ones_(target):
    return _fill(target, 1.0)


def kaiming_uniform_(target, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """:math:`U(-b, b)`, :math:`b = \\text{gain} \\sqrt{3 / \\text{fan}}`."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(np.shape(_array(target)))
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(target, -bound, bound)


def xavier_uniform_(target, gain=1.0):
    """:math:`U(-b, b)`, :math:`b = \\text{gain} \\sqrt{6 / (\\text{fan\\_in} + \\text{fan\\_out})}`."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(np.shape(_array(target)))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(target, -bound, bound)


def default_bias_(target, fan_in):
    """PyTorch's default bias of ``Linear``/``Conv2d``: :math:`U(-1/\\sqrt{\\text{fan\\_in}}, 1/\\sqrt{\\text{fan\\_in}})`."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(target, -bound, bound)
