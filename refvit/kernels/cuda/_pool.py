r"""The pooling kernels on the GPU (``avg_pool2d``, ``max_pool2d``), channels-last, and their launches.

Pools have no dilation, so the in-range taps of a window are one block of input pixels, rows
``[top, bottom)`` by columns ``[left, right)`` (:func:`window_span`), walked row by row.

* forward: one thread per output element. The average adds its block and divides by
  :math:`k_h k_w` (padding counts as zeros); the maximum starts at :math:`-\infty` with the
  block's first pixel selected and takes an input that is strictly larger, or the first NaN
  (first maximum wins). ``selected`` stores ``h*W + w``.
* backward (gather): one thread per input element; it adds :math:`\delta` of every output whose
  window covers it, :math:`u = (h + p_h - i)/s_h` and :math:`v = (w + p_w - j)/s_w` whole and in
  range, tap by tap; for the maximum only where ``selected`` names the element, for the average
  all of them, divided by :math:`k_h k_w`.

Sums and comparisons run in float64 registers and are rounded once on store. ``kernel``,
``stride`` and ``pad`` are pairs ``(along H, along W)``; ``take_max`` picks the pool.
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import empty, grid_1d
from refvit.kernels.cuda._window import nhwc_position, reached_output


@cuda.jit(device=True)
def window_span(position, stride, pad, kernel, size):
    """``[first, last)``: the input positions inside ``[0, size)`` that output ``position`` reads."""
    start = position * stride - pad
    return max(start, 0), min(start + kernel, size)


@cuda.jit
def _forward_kernel(x, out, selected, take_max, kernel, stride, pad):
    index = cuda.grid(1)
    if index >= out.size:
        return
    b, u, v, c = nhwc_position(index, out.shape[1], out.shape[2], out.shape[3])
    width = x.shape[2]
    top, bottom = window_span(u, stride[0], pad[0], kernel[0], x.shape[1])
    left, right = window_span(v, stride[1], pad[1], kernel[1], width)
    total = 0.0
    best = -math.inf
    best_at = top * width + left
    for h in range(top, bottom):
        for w in range(left, right):
            value = x[b, h, w, c]
            if not take_max:
                total += value
            elif value > best or (math.isnan(value) and not math.isnan(best)):
                best = value
                best_at = h * width + w
    if take_max:
        out[b, u, v, c] = best
        selected[b, u, v, c] = best_at
    else:
        out[b, u, v, c] = total / (kernel[0] * kernel[1])


@cuda.jit
def _backward_kernel(dout, selected, dx, take_max, kernel, stride, pad):
    index = cuda.grid(1)
    if index >= dx.size:
        return
    height, width = dx.shape[1], dx.shape[2]
    out_h, out_w = dout.shape[1], dout.shape[2]
    b, h, w, c = nhwc_position(index, height, width, dx.shape[3])
    position = h * width + w
    total = 0.0
    for i in range(kernel[0]):
        u = reached_output(h, pad[0], i, stride[0], out_h)
        if u < 0:
            continue
        for j in range(kernel[1]):
            v = reached_output(w, pad[1], j, stride[1], out_w)
            if v >= 0 and (not take_max or selected[b, u, v, c] == position):
                total += dout[b, u, v, c]
    dx[b, h, w, c] = total if take_max else total / (kernel[0] * kernel[1])


def _launch_args(selected, window):
    """``(selected, take_max, kernel, stride, pad)``: a one-element stand-in when ``selected`` is None (the average)."""
    take_max = selected is not None
    if not take_max:
        selected = empty((1, 1, 1, 1), np.int64)
    return selected, take_max, tuple(window.kernel), tuple(window.stride), tuple(window.padding)


def pool_forward(x, out, selected, window):
    """Fill the device array ``out`` (and ``selected``, the maximum's positions; None for the average) from ``x``."""
    _forward_kernel[grid_1d(out.size)](x, out, *_launch_args(selected, window))


def pool_backward(dout, selected, dx, window):
    """Fill the device array ``dx`` from ``dout`` (and ``selected``; None for the average)."""
    selected, *rest = _launch_args(selected, window)
    _backward_kernel[grid_1d(dx.size)](dout, selected, dx, *rest)
