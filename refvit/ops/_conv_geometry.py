r"""Sliding-window geometry shared by ``conv2d``, ``avg_pool2d`` and ``max_pool2d``.

Along one axis of length ``n``, a window of ``k`` taps with stride ``s``, zero padding
``p`` on both sides and dilation ``d`` has PyTorch's output length

.. math::  n_{out} = \left\lfloor \frac{n + 2p - d(k-1) - 1}{s} \right\rfloor + 1

and output position ``o`` reads input position ``o s - p + t d`` with tap ``t = 0..k-1``
(positions outside ``[0, n)`` are padding).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import as_tuple, check_array, fail


class Window(NamedTuple):
    """Per-axis window settings, each a pair ``(along H, along W)``."""

    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    def output_size(self, height, width):
        return tuple(
            output_length(n, k, s, p, d)
            for n, k, s, p, d in zip((height, width), self.kernel, self.stride, self.padding, self.dilation)
        )


def output_length(n, kernel, stride, padding, dilation=1):
    """PyTorch's output length along one axis (may be < 1 when the window does not fit)."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_pair(op, arg, value, minimum):
    """An int or a pair of ints, each ``>= minimum`` -> a pair."""
    return as_tuple(op, arg, value, 2, minimum=minimum)


def check_window_fits(op, arg, height, width, window):
    """The dilated window must fit the padded map on both axes (``ValueError`` otherwise)."""
    for axis, n, k, p, d in zip("HW", (height, width), window.kernel, window.padding, window.dilation):
        extent = d * (k - 1) + 1
        if extent > n + 2 * p:
            fail(op, arg, f"a window that fits the padded input along {axis} "
                          f"(dilated extent {extent} <= {n} + 2*{p})", f"kernel {window.kernel}")


def check_map(op, arg, x, backend):
    """``x`` is a float feature map ``(B, H, W, C)`` with ``H, W, C >= 1`` (an empty batch ``B = 0`` is fine)."""
    x = check_array(op, arg, x, backend, ndim=4)
    if min(x.shape[1:]) < 1:
        fail(op, arg, "a (B, H, W, C) array with H, W, C >= 1", f"shape {tuple(x.shape)}")
    return x


def tap_slice(tap, dilation, stride, out_len):
    """Slice of the padded axis read by tap ``tap`` at output positions ``0..out_len-1``."""
    start = tap * dilation
    return slice(start, start + stride * (out_len - 1) + 1, stride)


def pad_map(x, padding, value=0.0):
    """``x (B, H, W, C)`` padded by ``padding = (ph, pw)`` on both sides of H and W with ``value``."""
    ph, pw = padding
    return np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)


class ArraySpec(NamedTuple):
    """Shape and dtype of an array an op no longer holds (checked against ``dout``)."""

    shape: tuple
    dtype: np.dtype


def check_pool_window(op, x, kernel_size, stride, padding):
    """Pooling settings as PyTorch takes them: ``stride=None`` means ``kernel_size``, and
    ``padding`` may be at most half the kernel on each axis. Returns the :class:`Window`."""
    kernel = check_pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else check_pair(op, "stride", stride, 1)
    padding = check_pair(op, "padding", padding, 0)
    for k, p in zip(kernel, padding):
        if p > k // 2:
            fail(op, "padding", f"at most half the kernel size {kernel} (<= {tuple(k // 2 for k in kernel)})",
                 f"padding {padding}")
    window = Window(kernel, stride, padding, (1, 1))
    check_window_fits(op, "kernel_size", x.shape[1], x.shape[2], window)
    return window
