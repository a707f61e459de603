r"""2-D max pooling on channels-last maps, PyTorch semantics.

Shapes: ``x (B, H, W, C)`` -> ``out (B, H_out, W_out, C)`` with, per axis,
:math:`H_{out} = \lfloor (H + 2p - k)/s \rfloor + 1`; ``stride=None`` means ``stride = kernel_size``;
``padding`` is at most half the kernel (``p <= k // 2``), so every window holds at least one
input element; the padding is :math:`-\infty` and never wins. No dilation, no ``ceil_mode``.

.. math::  y_{b,u,v,c} = \max_{i<k_h,\,j<k_w} \tilde x_{b,\,u s_h - p_h + i,\,v s_w - p_w + j,\,c}

Backward: the whole gradient of an output goes to the input element that was selected,
:math:`(h^*, w^*) = \operatorname{sel}(b, u, v, c)`:

.. math::  \frac{\partial L}{\partial x_{b,h,w,c}} = \sum_{u,v\,:\,\operatorname{sel}(b,u,v,c) = (h,w)} \delta_{b,u,v,c}

Tie rule (PyTorch's CPU scan order): the window is scanned row by row (``i`` outer, ``j`` inner)
and the *first* maximal input element is selected; padding is never selected (a window of
``-inf`` inputs selects its first input element). A NaN counts as the maximum: the output is
NaN and the first NaN of the window is selected (PyTorch's CPU kernel keeps scanning and
routes to the last NaN; only the gradient of such windows differs).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops._conv_geometry import ArraySpec, Window, check_map, check_pool_window, pad_map, tap_slice
from refvit.ops import _dispatch as dispatch

OP = "max_pool2d"
DIFFERENTIABLE = ("x",)


class Cache(NamedTuple):
    x_shape: tuple
    out: ArraySpec
    selected: np.ndarray  # (B, H_out, W_out, C) int64: flat input position h*W + w of each maximum
    window: Window
    backend: str


def forward(x, kernel_size, stride=None, padding=0, backend=None):
    """``max_pool2d(x, kernel_size, stride, padding)`` -> ``(out, cache)``; see the module docstring."""
    backend = dispatch.resolve(OP, backend)
    x = check_map(OP, "x", x, backend)
    window = check_pool_window(OP, x, kernel_size, stride, padding)
    out, selected = dispatch.run(OP, backend, "forward", _forward_numpy, (x, window))
    return out, Cache(tuple(x.shape), ArraySpec(tuple(out.shape), x.dtype), selected, window, backend)


def backward(dout, cache):
    """``dout (B, H_out, W_out, C)`` -> ``(dx,)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.x_shape, cache.selected),
                         kernel_args=(dout, cache.x_shape, cache.selected, cache.window)),)


def example(rng):
    """Small float64 inputs for ``refvit check`` (distinct values, so no ties): ``(args, kwargs)``."""
    x = rng.permutation(2 * 5 * 4 * 2).reshape(2, 5, 4, 2) * 0.1 + 0.01 * rng.standard_normal((2, 5, 4, 2))
    return (x,), {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1}


def _forward_numpy(x, window):
    batch, height, width, channels = x.shape
    (kh, kw), (sh, sw), (ph, pw) = window.kernel, window.stride, window.padding
    out_h, out_w = window.output_size(height, width)
    padded = pad_map(x, window.padding, value=-np.inf)
    inside = pad_map(np.ones((1, height, width, 1), dtype=bool), window.padding, value=False)
    rows = [tap_slice(i, 1, sh, out_h) for i in range(kh)]
    cols = [tap_slice(j, 1, sw, out_w) for j in range(kw)]
    # windows[b, u, v, t, c] with tap t = i*kw + j in scan order
    windows = np.stack([padded[:, r, q, :] for r in rows for q in cols], axis=3)
    window_inside = np.stack([inside[:, r, q, :] for r in rows for q in cols], axis=3)
    out = windows.max(axis=3)
    candidates = window_inside & ((windows == out[:, :, :, None, :]) | np.isnan(windows))
    tap = np.argmax(candidates, axis=3)  # first candidate in scan order
    u = np.arange(out_h)[None, :, None, None]
    v = np.arange(out_w)[None, None, :, None]
    h = u * sh - ph + tap // kw
    w = v * sw - pw + tap % kw
    return out, (h * width + w).astype(np.int64)


def _backward_numpy(dout, x_shape, selected):
    batch, height, width, channels = x_shape
    dx = np.zeros((batch, height * width, channels), dtype=dout.dtype)
    b = np.arange(batch)[:, None, None, None]
    c = np.arange(channels)[None, None, None, :]
    np.add.at(dx, (b, selected, c), dout)
    return dx.reshape(x_shape)
