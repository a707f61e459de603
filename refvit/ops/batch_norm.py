r"""Batch normalisation over all axes but the last (channels-last), as PyTorch's ``BatchNorm``.

Shapes: ``x (..., C)`` with at least 2 dimensions; ``weight``, ``bias``, ``running_mean``,
``running_var`` ``(C,)`` or None -> ``y (..., C)``. The statistics of channel :math:`c` are taken
over its :math:`n = \text{x.size} / C` values.

Forward, training (``training=True``): batch statistics with the biased variance,

.. math::  \mu_c = \frac1n\sum_r x_{rc},\qquad \sigma_c^2 = \frac1n\sum_r (x_{rc} - \mu_c)^2,
           \qquad s_c = \frac{1}{\sqrt{\sigma_c^2 + \epsilon}}

.. math::  \hat x_{rc} = (x_{rc} - \mu_c)\,s_c,\qquad y_{rc} = w_c\,\hat x_{rc} + b_c

and, when running statistics are given, they are updated **in place** with momentum :math:`m`
and the unbiased variance (PyTorch's rule; without them nothing is tracked):

.. math::  \bar\mu_c \leftarrow (1 - m)\,\bar\mu_c + m\,\mu_c,\qquad
           \bar\sigma^2_c \leftarrow (1 - m)\,\bar\sigma^2_c + m\,\frac{n}{n-1}\,\sigma_c^2

Forward, evaluation (``training=False``): :math:`\mu = \bar\mu`, :math:`s = 1/\sqrt{\bar\sigma^2 + \epsilon}`
are constants; the running statistics are required and are not changed.

Backward, with :math:`g = \partial L/\partial y`:

.. math::  \frac{\partial L}{\partial w_c} = \sum_r g_{rc}\,\hat x_{rc},\qquad
           \frac{\partial L}{\partial b_c} = \sum_r g_{rc}

Evaluation (an affine map with constant :math:`\mu, s`):
:math:`\partial L/\partial x_{rc} = g_{rc}\,w_c\,s_c`. Training (:math:`\mu, s` depend on
:math:`x`; the running-statistics update is not differentiated):

.. math::  \frac{\partial L}{\partial x_{rc}} = w_c\,s_c\Bigl(g_{rc} - \frac1n\sum_{r'} g_{r'c}
           - \hat x_{rc}\,\frac1n\sum_{r'} g_{r'c}\,\hat x_{r'c}\Bigr)
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from refvit._validate import (
    check_array,
    check_grad,
    check_optional_array,
    check_same_dtype,
    check_shape,
    describe,
    fail,
    is_device_array,
)
from refvit.ops import _dispatch as dispatch

OP = "batch_norm"
DIFFERENTIABLE = ("x", "weight", "bias")


class Cache(NamedTuple):
    x: np.ndarray
    mean: np.ndarray  # (C,) batch mean (training) or running mean (evaluation)
    rstd: np.ndarray  # (C,) 1 / sqrt(var + eps)
    weight: np.ndarray | None
    has_bias: bool
    training: bool
    backend: str


def forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, backend=None):
    """``batch_norm(...)`` -> ``(y, cache)``; updates ``running_mean``/``running_var`` in place when training."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend, min_ndim=2)
    channels = tuple(x.shape)[-1]
    weight = check_optional_array(OP, "weight", weight, backend)
    bias = check_optional_array(OP, "bias", bias, backend)
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None:
            check_shape(OP, name, param, (channels,))
    if not isinstance(training, (bool, np.bool_)):
        fail(OP, "training", "a bool", describe(training), TypeError)
    training = bool(training)
    _check_running_stats(running_mean, running_var, channels, training, backend)
    check_same_dtype(OP, x=x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    momentum = _check_real("momentum", momentum, 0.0, 1.0)
    eps = _check_real("eps", eps, 0.0, None)
    values_per_channel = x.size // channels if channels else 0
    if training and values_per_channel <= 1:
        fail(OP, "x", "an array with more than 1 value per channel when training",
             f"shape {tuple(x.shape)}")
    y, mean, rstd = dispatch.run(OP, backend, "forward", _forward_numpy,
                                 (x, weight, bias, running_mean, running_var, training, momentum, eps))
    return y, Cache(x, mean, rstd, weight, bias is not None, training, backend)


def backward(dout, cache):
    """``dout (..., C)`` -> ``(dx, dweight, dbias)``; ``dweight``/``dbias`` are None when that input was None."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.x)
    dx, dweight, dbias = dispatch.run(OP, cache.backend, "backward", _backward_numpy,
                                      (dout, cache.x, cache.mean, cache.rstd, cache.weight, cache.training))
    return dx, (dweight if cache.weight is not None else None), (dbias if cache.has_bias else None)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)`` (training mode)."""
    channels = 3
    # x is drawn uniform, not normal: a checker that draws its upstream gradient from a generator
    # seeded like ``rng`` must not get an upstream gradient that is an affine function of x.
    args = (rng.uniform(-2.0, 3.0, (2, 3, 2, channels)), rng.standard_normal(channels),
            rng.standard_normal(channels), np.zeros(channels), np.ones(channels), True)
    return args, {}


def _check_real(name, value, minimum, maximum):
    bounds = f">= {minimum:g}" + ("" if maximum is None else f" and <= {maximum:g}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        fail(OP, name, f"a real number {bounds}", describe(value), TypeError)
    if not (value >= minimum and (maximum is None or value <= maximum)):
        fail(OP, name, f"a real number {bounds}", value)
    return float(value)


def _check_running_stats(running_mean, running_var, channels, training, backend):
    """Running statistics are updated in place, so they must be real arrays (no lists), both or neither."""
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is None:
            if not training:
                fail(OP, name, f"an array of shape ({channels},) when training=False", "None")
            continue
        if not (isinstance(stat, np.ndarray) or (backend == "cuda" and is_device_array(stat))):
            fail(OP, name, "a NumPy array (it is updated in place)", describe(stat), TypeError)
        check_array(OP, name, stat, backend)
        check_shape(OP, name, stat, (channels,))
        if isinstance(stat, np.ndarray) and training and not stat.flags.writeable:
            fail(OP, name, "a writeable array (it is updated in place when training)", "a read-only array")
    if (running_mean is None) != (running_var is None):
        fail(OP, "running_mean, running_var", "both arrays or both None",
             f"running_mean={describe(running_mean)}, running_var={describe(running_var)}")


def _forward_numpy(x, weight, bias, running_mean, running_var, training, momentum, eps):
    rows = tuple(range(x.ndim - 1))
    if training:
        mean = np.mean(x, axis=rows)
        var = np.mean((x - mean) ** 2, axis=rows)
        if running_mean is not None:
            n = x.size // x.shape[-1]
            running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean
            running_var[...] = (1.0 - momentum) * running_var + momentum * (n / (n - 1)) * var
    else:
        mean = running_mean.copy()  # a snapshot: later updates of the buffers do not change backward
        var = running_var
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def _backward_numpy(dout, x, mean, rstd, weight, training):
    rows = tuple(range(x.ndim - 1))
    x_hat = (x - mean) * rstd
    dbias = np.sum(dout, axis=rows)
    dweight = np.sum(dout * x_hat, axis=rows)
    scale = rstd if weight is None else weight * rstd
    if not training:
        return dout * scale, dweight, dbias
    n = x.size // x.shape[-1]
    dx = scale * (dout - dbias / n - x_hat * (dweight / n))
    return dx, dweight, dbias
