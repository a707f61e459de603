r"""2-D convolution (cross-correlation, as PyTorch's ``conv2d``) on channels-last maps.

Shapes: ``x (B, H, W, C_in)``, ``weight (C_out, C_in/G, kh, kw)`` (PyTorch layout),
``bias (C_out,)`` or ``None`` -> ``out (B, H_out, W_out, C_out)`` with ``G = groups`` and, per
axis, :math:`H_{out} = \lfloor (H + 2p - d(k-1) - 1)/s \rfloor + 1`.

Channels are split into ``G`` groups: input channels ``[g C_g, (g+1) C_g)`` (``C_g = C_in/G``)
feed output channels ``[g O_g, (g+1) O_g)`` (``O_g = C_out/G``). ``groups == C_in`` is the
depthwise convolution (with channel multiplier ``C_out/C_in``). With :math:`\tilde x` the input
zero-padded by ``p`` and :math:`g(o) = \lfloor o / O_g \rfloor`:

.. math::  y_{b,u,v,o} = \beta_o + \sum_{c<C_g}\sum_{i<k_h}\sum_{j<k_w}
           \tilde x_{b,\,u s_h + i d_h,\,v s_w + j d_w,\,g(o) C_g + c}\; w_{o,c,i,j}

Backward, with :math:`\delta = \partial L/\partial y`:

.. math::  \frac{\partial L}{\partial \beta_o} = \sum_{b,u,v} \delta_{b,u,v,o}, \qquad
           \frac{\partial L}{\partial w_{o,c,i,j}} = \sum_{b,u,v} \delta_{b,u,v,o}\,
           \tilde x_{b,\,u s_h + i d_h,\,v s_w + j d_w,\,g(o) C_g + c}

.. math::  \frac{\partial L}{\partial \tilde x_{b,\,u s_h + i d_h,\,v s_w + j d_w,\,g C_g + c}}
           \mathrel{+}= \sum_{o \in g} \delta_{b,u,v,o}\, w_{o,c,i,j}

and :math:`\partial L/\partial x` is :math:`\partial L/\partial \tilde x` with the padding cut off.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import (
    check_array, check_grad, check_int, check_optional_array, check_same_dtype, check_shape, fail,
)
from refvit.ops import _dispatch as dispatch
from refvit.ops._needs import check_needs
from refvit.ops._conv_geometry import ArraySpec, Window, check_map, check_pair, check_window_fits, pad_map, tap_slice

OP = "conv2d"
DIFFERENTIABLE = ("x", "weight", "bias")


class Cache(NamedTuple):
    x: np.ndarray
    weight: np.ndarray
    has_bias: bool
    window: Window
    groups: int
    out_shape: tuple
    backend: str


def forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """``conv2d(x, weight, bias)`` -> ``(out, cache)``; see the module docstring for the math."""
    backend = dispatch.resolve(OP, backend)
    x = check_map(OP, "x", x, backend)
    weight = check_array(OP, "weight", weight, backend, ndim=4)
    bias = check_optional_array(OP, "bias", bias, backend, ndim=1)
    check_same_dtype(OP, x=x, weight=weight, bias=bias)
    groups = check_int(OP, "groups", groups, minimum=1)
    batch, height, width, in_channels = x.shape
    out_channels, group_in, kh, kw = weight.shape
    if in_channels % groups or out_channels % groups:
        fail(OP, "groups", f"a divisor of C_in = {in_channels} and C_out = {out_channels}", groups)
    if min(out_channels, kh, kw) < 1 or group_in != in_channels // groups:
        fail(OP, "weight", f"of shape (C_out, C_in/groups = {in_channels // groups}, kh, kw) with no empty axis",
             f"shape {tuple(weight.shape)}")
    if bias is not None:
        check_shape(OP, "bias", bias, (out_channels,))
    window = Window((kh, kw), check_pair(OP, "stride", stride, 1), check_pair(OP, "padding", padding, 0),
                    check_pair(OP, "dilation", dilation, 1))
    check_window_fits(OP, "weight", height, width, window)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x, weight, bias, window, groups),
                       kernel_args=(x, weight, bias, window))  # the kernels read groups off the shapes
    return out, Cache(x, weight, bias is not None, window, groups, tuple(out.shape), backend)


def backward(dout, cache, needs=None):
    """``dout (B, H_out, W_out, C_out)`` -> ``(dx, dweight, dbias)`` (``dbias`` None without bias).

    ``needs``: one bool per ``DIFFERENTIABLE`` input (``None``: all True); a gradient whose flag is False is
    not computed and comes back as ``None`` (a stem's ``dx``, whose input is the image)."""
    dispatch.check_cache(OP, cache, Cache)
    needs = check_needs(OP, needs, DIFFERENTIABLE)
    dout = check_grad(OP, dout, ArraySpec(cache.out_shape, cache.x.dtype))
    args = (dout, cache.x, cache.weight, cache.has_bias and needs[2], cache.window)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, args + (cache.groups, needs[:2]),
                        kernel_args=args + (needs[:2],))


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    x = rng.standard_normal((1, 4, 5, 4))
    weight = rng.standard_normal((4, 2, 3, 2))
    bias = rng.standard_normal(4)
    return (x, weight, bias), {"stride": (1, 2), "padding": 1, "dilation": (2, 1), "groups": 2}


def is_depthwise(in_channels, out_channels, groups):
    """One filter per channel, no multiplier: the case the kernel entries hand to their depthwise kernels."""
    return groups == in_channels == out_channels


def _taps(window):
    kh, kw = window.kernel
    return [(i, j) for i in range(kh) for j in range(kw)]


def _tap_window(padded, i, j, window, out_size):
    """``padded[b, u s_h + i d_h, v s_w + j d_w, :]`` for all ``(b, u, v)``: ``(B, H_out, W_out, C)``."""
    rows = tap_slice(i, window.dilation[0], window.stride[0], out_size[0])
    cols = tap_slice(j, window.dilation[1], window.stride[1], out_size[1])
    return padded[:, rows, cols, :], (slice(None), rows, cols, slice(None))


def _forward_numpy(x, weight, bias, window, groups):
    batch, height, width, in_channels = x.shape
    out_channels, group_in, kh, kw = weight.shape
    out_size = window.output_size(height, width)
    padded = pad_map(x, window.padding)
    w_grouped = weight.reshape(groups, out_channels // groups, group_in, kh, kw)
    out = np.zeros((batch, *out_size, groups, out_channels // groups), dtype=x.dtype)
    for i, j in _taps(window):
        patch, _ = _tap_window(padded, i, j, window, out_size)
        patch = patch.reshape(batch, *out_size, groups, group_in)
        out += np.einsum("buvgc,goc->buvgo", patch, w_grouped[:, :, :, i, j])
    out = out.reshape(batch, *out_size, out_channels)
    return out if bias is None else out + bias


def _backward_numpy(dout, x, weight, has_bias, window, groups, needs=(True, True)):
    """``needs``: whether ``dx`` and ``dweight`` are wanted (``None`` in their place when not);
    ``has_bias`` False also when ``dbias`` is not wanted."""
    batch, height, width, in_channels = x.shape
    out_channels, group_in, kh, kw = weight.shape
    out_size = dout.shape[1:3]
    padded = pad_map(x, window.padding)
    dpadded = np.zeros_like(padded) if needs[0] else None
    w_grouped = weight.reshape(groups, out_channels // groups, group_in, kh, kw)
    dout_grouped = dout.reshape(batch, *out_size, groups, out_channels // groups)
    dweight = np.zeros_like(w_grouped) if needs[1] else None
    for i, j in _taps(window):
        patch, index = _tap_window(padded, i, j, window, out_size)
        patch = patch.reshape(batch, *out_size, groups, group_in)
        if needs[1]:
            dweight[:, :, :, i, j] = np.einsum("buvgo,buvgc->goc", dout_grouped, patch)
        if needs[0]:
            dpatch = np.einsum("buvgo,goc->buvgc", dout_grouped, w_grouped[:, :, :, i, j])
            dpadded[index] += dpatch.reshape(batch, *out_size, in_channels)
    ph, pw = window.padding
    dx = np.ascontiguousarray(dpadded[:, ph:ph + height, pw:pw + width, :]) if needs[0] else None
    dbias = dout.sum(axis=(0, 1, 2)) if has_bias else None
    return dx, (dweight.reshape(weight.shape) if needs[1] else None), dbias
