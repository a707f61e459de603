r"""Average pooling on the CPU, channels-last, padding counted as zeros (divisor ``kh*kw``).

* forward: ``prange`` over output rows ``(b, u)``; each output pixel adds the in-range inputs
  of its window (out-of-range taps are the zero padding and are skipped) and scales by
  :math:`1/(k_h k_w)`.
* backward (gather): ``prange`` over input rows ``(b, h)``; input pixel ``(h, w)`` collects
  :math:`\delta_{b,u,v,c}/(k_h k_w)` from the outputs whose window covers it,
  :math:`u = (h + p_h - i)/s_h` for the taps ``i`` where that is a whole number in ``[0, H_out)``.
"""
import numpy as np

from refvit.kernels.cpu._pool import pool_backward, pool_forward, window_args as _window_args


def _forward(x, out, kernel, stride, pad):
    """The pool walk with no selection: the window average."""
    pool_forward(x, out, None, kernel, stride, pad)


def _backward(dout, dx, kernel, stride, pad):
    pool_backward(dout, None, dx, kernel, stride, pad)


def forward(x, window):
    x = np.ascontiguousarray(x)
    out = np.zeros((x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3]), dtype=x.dtype)
    _forward(x, out, *_window_args(window))
    return out


def backward(dout, x_shape, window):
    dx = np.zeros(x_shape, dtype=dout.dtype)
    _backward(np.ascontiguousarray(dout), dx, *_window_args(window))
    return dx
