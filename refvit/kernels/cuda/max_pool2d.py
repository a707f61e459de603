r"""Max pooling on the GPU, channels-last, with the index of each maximum kept for backward.

* forward: one thread per output element; it scans its window row by row from :math:`-\infty`
  with the first in-range input selected, and takes an input that is strictly larger or the
  first NaN (first maximum wins). ``selected`` stores ``h*W + w``.
* backward (gather): one thread per input element; it adds :math:`\delta` of every output whose
  window covers it and whose ``selected`` names it.
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._window import nhwc_position, reached_output


@cuda.jit
def _forward_kernel(x, out, selected, kh, kw, stride_h, stride_w, pad_h, pad_w):
    index = cuda.grid(1)
    if index >= out.size:
        return
    batch, out_h, out_w, channels = out.shape
    height, width = x.shape[1], x.shape[2]
    b, u, v, c = nhwc_position(index, out_h, out_w, channels)
    best = -math.inf
    best_at = max(u * stride_h - pad_h, 0) * width + max(v * stride_w - pad_w, 0)
    for i in range(kh):
        h = u * stride_h - pad_h + i
        if h < 0 or h >= height:
            continue
        for j in range(kw):
            w = v * stride_w - pad_w + j
            if w < 0 or w >= width:
                continue
            value = x[b, h, w, c]
            if value > best or (math.isnan(value) and not math.isnan(best)):
                best = value
                best_at = h * width + w
    out[b, u, v, c] = best
    selected[b, u, v, c] = best_at


@cuda.jit
def _backward_kernel(dout, selected, dx, kh, kw, stride_h, stride_w, pad_h, pad_w):
    index = cuda.grid(1)
    if index >= dx.size:
        return
    batch, height, width, channels = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    b, h, w, c = nhwc_position(index, height, width, channels)
    position = h * width + w
    total = 0.0
    for i in range(kh):
        u = reached_output(h, pad_h, i, stride_h, out_h)
        if u < 0:
            continue
        for j in range(kw):
            v = reached_output(w, pad_w, j, stride_w, out_w)
            if v >= 0:
                if selected[b, u, v, c] == position:
                    total += dout[b, u, v, c]
    dx[b, h, w, c] = total


def _window_args(window):
    (kh, kw), (stride_h, stride_w), (pad_h, pad_w) = window.kernel, window.stride, window.padding
    return kh, kw, stride_h, stride_w, pad_h, pad_w


def forward(x, window):
    on_device = any_device(x)
    (x,) = to_device(x)
    shape = (x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3])
    out = empty(shape, x.dtype)
    selected = empty(shape, np.int64)
    _forward_kernel[grid_1d(out.size)](x, out, selected, *_window_args(window))
    return to_host_unless(on_device, out, selected)


def backward(dout, x_shape, selected, window):
    on_device = any_device(dout)
    dout, selected = to_device(dout, selected)
    dx = empty(x_shape, dout.dtype)
    _backward_kernel[grid_1d(dx.size)](dout, selected, dx, *_window_args(window))
    return to_host_unless(on_device, dx)
