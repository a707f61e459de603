r"""Channel shuffle (ShuffleNet; SMT's scale-aware aggregation): interleave channel groups.

Shapes: ``x (B, H, W, C)`` channels-last, ``C`` divisible by ``groups`` -> ``y (B, H, W, C)``.

With :math:`n = C / \text{groups}` channels per group, channel :math:`i n + j` of the input
(channel :math:`j` of group :math:`i`) becomes channel :math:`j\,\text{groups} + i` of the output:

.. math::  y_{\dots,\, j\,\text{groups} + i} = x_{\dots,\, i n + j},
           \qquad 0 \le i < \text{groups},\ 0 \le j < n

i.e. ``x.reshape(B, H, W, groups, n).transpose(0, 1, 2, 4, 3).reshape(B, H, W, C)``: the output
takes one channel from each group in turn.

Backward: the map is a permutation :math:`P`, so :math:`\partial L/\partial x = P^\top g`, the
inverse permutation, which is the same shuffle with the roles of ``groups`` and ``n`` swapped:

.. math::  \frac{\partial L}{\partial x} = \operatorname{channel\_shuffle}(g,\ \text{groups} = n)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_int, fail
from refvit.ops import _dispatch as dispatch

OP = "channel_shuffle"
DIFFERENTIABLE = ("x",)


class _Like(NamedTuple):
    shape: tuple
    dtype: np.dtype


class Cache(NamedTuple):
    like: _Like  # shape and dtype of x (the only things backward needs)
    groups: int
    backend: str


def forward(x, groups, backend=None):
    """``channel_shuffle(x, groups)`` -> ``(y, cache)``; see the module docstring."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend, ndim=4)
    channels = tuple(x.shape)[3]
    groups = check_int(OP, "groups", groups, minimum=1)
    if channels % groups != 0:
        fail(OP, "groups", f"a divisor of the channel count C = {channels}", groups)
    y = dispatch.run(OP, backend, "forward", _shuffle_numpy, (x, groups))
    return y, Cache(_Like(tuple(x.shape), np.dtype(x.dtype)), groups, backend)


def backward(dout, cache):
    """``dout (B, H, W, C)`` -> ``(dx,)``, the inverse shuffle."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.like)
    channels_per_group = cache.like.shape[3] // cache.groups
    return (dispatch.run(OP, cache.backend, "backward", _shuffle_numpy, (dout, channels_per_group)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 2, 3, 6)),), {"groups": 3}


def _shuffle_numpy(x, groups):
    batch, height, width, channels = x.shape
    grouped = x.reshape(batch, height, width, groups, channels // groups)
    return np.ascontiguousarray(grouped.transpose(0, 1, 2, 4, 3)).reshape(batch, height, width, channels)
