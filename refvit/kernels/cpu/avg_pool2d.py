r"""Average pooling on the CPU, channels-last, padding counted as zeros (divisor ``kh*kw``).

* forward: ``prange`` over output rows ``(b, u)``; each output pixel adds the in-range inputs
  of its window (out-of-range taps are the zero padding and are skipped) and scales by
  :math:`1/(k_h k_w)`.
* backward (gather): ``prange`` over input rows ``(b, h)``; input pixel ``(h, w)`` collects
  :math:`\delta_{b,u,v,c}/(k_h k_w)` from the outputs whose window covers it,
  :math:`u = (h + p_h - i)/s_h` for the taps ``i`` where that is a whole number in ``[0, H_out)``.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._window import reached_output


@njit(cache=True, parallel=True)
def _forward(x, out, kh, kw, stride_h, stride_w, pad_h, pad_w):
    batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    scale = 1.0 / (kh * kw)
    for row in prange(batch * out_h):
        b = row // out_h
        u = row % out_h
        for v in range(out_w):
            for i in range(kh):
                h = u * stride_h - pad_h + i
                if h < 0 or h >= height:
                    continue
                for j in range(kw):
                    w = v * stride_w - pad_w + j
                    if w < 0 or w >= width:
                        continue
                    for c in range(channels):
                        out[b, u, v, c] += x[b, h, w, c]
            for c in range(channels):
                out[b, u, v, c] *= scale


@njit(cache=True, parallel=True)
def _backward(dout, dx, kh, kw, stride_h, stride_w, pad_h, pad_w):
    batch, height, width, channels = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    scale = 1.0 / (kh * kw)
    for row in prange(batch * height):
        b = row // height
        h = row % height
        for w in range(width):
            for i in range(kh):
                u = reached_output(h, pad_h, i, stride_h, out_h)
                if u < 0:
                    continue
                for j in range(kw):
                    v = reached_output(w, pad_w, j, stride_w, out_w)
                    if v < 0:
                        continue
                    for c in range(channels):
                        dx[b, h, w, c] += dout[b, u, v, c]
            for c in range(channels):
                dx[b, h, w, c] *= scale


def _window_args(window):
    (kh, kw), (stride_h, stride_w), (pad_h, pad_w) = window.kernel, window.stride, window.padding
    return kh, kw, stride_h, stride_w, pad_h, pad_w


def forward(x, window):
    x = np.ascontiguousarray(x)
    out = np.zeros((x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3]), dtype=x.dtype)
    _forward(x, out, *_window_args(window))
    return out


def backward(dout, x_shape, window):
    dx = np.zeros(x_shape, dtype=dout.dtype)
    _backward(np.ascontiguousarray(dout), dx, *_window_args(window))
    return dx
