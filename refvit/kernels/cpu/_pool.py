r"""The window walks of the CPU pooling kernels (``avg_pool2d``, ``max_pool2d``), channels-last.

Pools have no dilation, so the in-range taps of a window are one block of input pixels,
rows ``[top, bottom)`` by columns ``[left, right)`` (:func:`window_span`), walked row by row.

* :func:`pool_forward`: ``prange`` over output rows ``(b, u)``; every pixel reduces its block, either to
  the sum times :math:`1/(k_h k_w)` (padding counts as zeros) or to the maximum and the position
  ``h*W + w`` of the first maximum (a NaN wins once; PyTorch's scan order).
* :func:`pool_backward`: ``prange`` over input rows ``(b, h)``, in gather form: pixel ``(h, w)`` adds
  :math:`\delta_{u,v}` of every output whose window covers it, tap ``(i, j)`` in order, giving
  :math:`u = (h + p_h - i)/s_h` and :math:`v = (w + p_w - j)/s_w`; for the maximum only where
  ``selected`` names the pixel, for the average all, times :math:`1/(k_h k_w)` at the end.

``kernel``, ``stride`` and ``pad`` are pairs ``(along H, along W)``. ``selected`` None means the
average; Numba decides the ``is None`` tests when it compiles, so each pool gets loops of its own.
The walks stay inside the ``prange`` loops: moved into a function called per row, the max-pool
backward ran 2.8x slower (0.74 ms against 0.27 ms at (8, 56, 56, 64), 2x2/2, one thread).
"""
import math

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._window import reached_output


@njit(cache=True)
def window_span(position, stride, pad, kernel, size):
    """``[first, last)``: the input positions inside ``[0, size)`` that output ``position`` reads."""
    start = position * stride - pad
    return max(start, 0), min(start + kernel, size)


def window_args(window):
    """The kernels' geometry arguments: ``kernel``, ``stride``, ``pad``, each ``(along H, along W)``."""
    return tuple(window.kernel), tuple(window.stride), tuple(window.padding)


@njit(cache=True, parallel=True)
def pool_forward(x, out, selected, kernel, stride, pad):
    """``out (B, H_out, W_out, C)`` from ``x (B, H, W, C)``: the maximum and its positions in ``selected``
    (shaped like ``out``) or, with ``selected`` None, the average (added into ``out``, which starts at zero)."""
    batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    scale = 1.0 / (kernel[0] * kernel[1])
    for row in prange(batch * out_h):
        b, u = row // out_h, row % out_h
        top, bottom = window_span(u, stride[0], pad[0], kernel[0], height)
        for v in range(out_w):
            left, right = window_span(v, stride[1], pad[1], kernel[1], width)
            pixel = out[b, u, v]
            if selected is not None:
                where = selected[b, u, v]
                for c in range(channels):
                    pixel[c] = -np.inf
                    where[c] = top * width + left
            for h in range(top, bottom):
                for w in range(left, right):
                    source = x[b, h, w]
                    if selected is not None:
                        for c in range(channels):
                            value = source[c]
                            best = pixel[c]
                            if value > best or (math.isnan(value) and not math.isnan(best)):
                                pixel[c] = value
                                where[c] = h * width + w
                    else:
                        for c in range(channels):
                            pixel[c] += source[c]
            if selected is None:
                for c in range(channels):
                    pixel[c] *= scale


@njit(cache=True, parallel=True)
def pool_backward(dout, selected, dx, kernel, stride, pad):
    """``dx (B, H, W, C)`` from ``dout (B, H_out, W_out, C)``: for the maximum, where ``selected`` (its
    positions, shaped like ``dout``) names the pixel; with ``selected`` None, the average."""
    batch, height, width, channels = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    scale = 1.0 / (kernel[0] * kernel[1])
    for row in prange(batch * height):
        b, h = row // height, row % height
        for w in range(width):
            position = h * width + w
            for i in range(kernel[0]):
                u = reached_output(h, pad[0], i, stride[0], out_h)
                if u < 0:
                    continue
                for j in range(kernel[1]):
                    v = reached_output(w, pad[1], j, stride[1], out_w)
                    if v < 0:
                        continue
                    if selected is not None:
                        for c in range(channels):
                            if selected[b, u, v, c] == position:
                                dx[b, h, w, c] += dout[b, u, v, c]
                    else:
                        for c in range(channels):
                            dx[b, h, w, c] += dout[b, u, v, c]
            if selected is None:
                for c in range(channels):
                    dx[b, h, w, c] *= scale
