r"""Max pooling on the CPU, channels-last, with the index of each maximum kept for backward.

* forward: ``prange`` over output rows ``(b, u)``. Each output pixel starts at :math:`-\infty`
  with its window's first in-range input as the selection, then scans its in-range taps row by
  row; an input replaces the current maximum when it is strictly larger, or when it is the
  first NaN (PyTorch's scan order, first maximum wins). ``selected`` stores ``h*W + w``.
* backward (gather): ``prange`` over input rows ``(b, h)``; input pixel ``(h, w)`` looks at the
  outputs whose window covers it and adds :math:`\delta_{b,u,v,c}` where ``selected`` names it.
"""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._window import reached_output


@njit(cache=True, parallel=True)
def _forward(x, out, selected, kh, kw, stride_h, stride_w, pad_h, pad_w):
    batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for row in prange(batch * out_h):
        b = row // out_h
        u = row % out_h
        first_h = max(u * stride_h - pad_h, 0)
        for v in range(out_w):
            first_w = max(v * stride_w - pad_w, 0)
            for c in range(channels):
                out[b, u, v, c] = -np.inf
                selected[b, u, v, c] = first_h * width + first_w
            for i in range(kh):
                h = u * stride_h - pad_h + i
                if h < 0 or h >= height:
                    continue
                for j in range(kw):
                    w = v * stride_w - pad_w + j
                    if w < 0 or w >= width:
                        continue
                    for c in range(channels):
                        value = x[b, h, w, c]
                        best = out[b, u, v, c]
                        if value > best or (math.isnan(value) and not math.isnan(best)):
                            out[b, u, v, c] = value
                            selected[b, u, v, c] = h * width + w


@njit(cache=True, parallel=True)
def _backward(dout, selected, dx, kh, kw, stride_h, stride_w, pad_h, pad_w):
    batch, height, width, channels = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    for row in prange(batch * height):
        b = row // height
        h = row % height
        for w in range(width):
            position = h * width + w
            for i in range(kh):
                u = reached_output(h, pad_h, i, stride_h, out_h)
                if u < 0:
                    continue
                for j in range(kw):
                    v = reached_output(w, pad_w, j, stride_w, out_w)
                    if v < 0:
                        continue
                    for c in range(channels):
                        if selected[b, u, v, c] == position:
                            dx[b, h, w, c] += dout[b, u, v, c]


def _window_args(window):
    (kh, kw), (stride_h, stride_w), (pad_h, pad_w) = window.kernel, window.stride, window.padding
    return kh, kw, stride_h, stride_w, pad_h, pad_w


def forward(x, window):
    x = np.ascontiguousarray(x)
    shape = (x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3])
    out = np.empty(shape, dtype=x.dtype)
    selected = np.empty(shape, dtype=np.int64)
    _forward(x, out, selected, *_window_args(window))
    return out, selected


def backward(dout, x_shape, selected, window):
    dx = np.zeros(x_shape, dtype=dout.dtype)
    _backward(np.ascontiguousarray(dout), selected, dx, *_window_args(window))
    return dx
