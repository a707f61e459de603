r"""2-D average pooling on channels-last maps, PyTorch semantics (``count_include_pad=True``).

Shapes: ``x (B, H, W, C)`` -> ``out (B, H_out, W_out, C)`` with, per axis,
:math:`H_{out} = \lfloor (H + 2p - k)/s \rfloor + 1`; ``stride=None`` means ``stride = kernel_size``;
``padding`` is at most half the kernel (``p <= k // 2``), as PyTorch requires; no ``ceil_mode``.

The padded positions count as zeros in the mean, so every window divides by :math:`k_h k_w`
(with :math:`\tilde x` the input zero-padded by ``p``):

.. math::  y_{b,u,v,c} = \frac{1}{k_h k_w} \sum_{i<k_h}\sum_{j<k_w} \tilde x_{b,\,u s_h + i,\,v s_w + j,\,c}

Backward: each output spreads its gradient evenly over its window,

.. math::  \frac{\partial L}{\partial \tilde x_{b,\,u s_h + i,\,v s_w + j,\,c}} \mathrel{+}=
           \frac{\delta_{b,u,v,c}}{k_h k_w}

and :math:`\partial L/\partial x` is :math:`\partial L/\partial \tilde x` without the padding.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops._conv_geometry import ArraySpec, Window, check_map, check_pool_window, pad_map, tap_slice
from refvit.ops import _dispatch as dispatch

OP = "avg_pool2d"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    x_shape: tuple
    out: ArraySpec
    window: Window
    backend: str


def forward(x, kernel_size, stride=None, padding=0, backend=None):
    """``avg_pool2d(x, kernel_size, stride, padding)`` -> ``(out, cache)``; see the module docstring."""
    backend = dispatch.resolve(OP, backend)
    x = check_map(OP, "x", x, backend)
    window = check_pool_window(OP, x, kernel_size, stride, padding)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x, window))
    return out, Cache(tuple(x.shape), ArraySpec(tuple(out.shape), x.dtype), window, backend)


def backward(dout, cache):
    """``dout (B, H_out, W_out, C)`` -> ``(dx,)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.x_shape, cache.window)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 5, 4, 2)),), {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1}


def _taps(window, out_size):
    """For each tap ``(i, j)``: the index of ``padded[b, u s_h + i, v s_w + j, c]`` over all ``(b, u, v, c)``."""
    (kh, kw), (sh, sw) = window.kernel, window.stride
    return [(slice(None), tap_slice(i, 1, sh, out_size[0]), tap_slice(j, 1, sw, out_size[1]), slice(None))
            for i in range(kh) for j in range(kw)]


def _forward_numpy(x, window):
    out_size = window.output_size(x.shape[1], x.shape[2])
    padded = pad_map(x, window.padding)
    total = np.zeros((x.shape[0], *out_size, x.shape[3]), dtype=x.dtype)
    for index in _taps(window, out_size):
        total += padded[index]
    return total * (1.0 / (window.kernel[0] * window.kernel[1]))


def _backward_numpy(dout, x_shape, window):
    batch, height, width, channels = x_shape
    (ph, pw) = window.padding
    share = dout * (1.0 / (window.kernel[0] * window.kernel[1]))
    dpadded = np.zeros((batch, height + 2 * ph, width + 2 * pw, channels), dtype=dout.dtype)
    for index in _taps(window, dout.shape[1:3]):
        dpadded[index] += share
    return np.ascontiguousarray(dpadded[:, ph:ph + height, pw:pw + width, :])
