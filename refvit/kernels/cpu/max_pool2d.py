r"""Max pooling on the CPU, channels-last, with the index of each maximum kept for backward.

* forward: ``prange`` over output rows ``(b, u)``. Each output pixel starts at :math:`-\infty`
  with its window's first in-range input as the selection, then scans its in-range taps row by
  row; an input replaces the current maximum when it is strictly larger, or when it is the
  first NaN (PyTorch's scan order, first maximum wins). ``selected`` stores ``h*W + w``.
* backward (gather): ``prange`` over input rows ``(b, h)``; input pixel ``(h, w)`` looks at the
  outputs whose window covers it and adds :math:`\delta_{b,u,v,c}` where ``selected`` names it.
"""
import numpy as np

from refvit.kernels.cpu._pool import pool_backward, pool_forward, window_args as _window_args


def _forward(x, out, selected, kernel, stride, pad):
    """The pool walk that keeps the maximum and where it was."""
    pool_forward(x, out, selected, kernel, stride, pad)


def _backward(dout, selected, dx, kernel, stride, pad):
    pool_backward(dout, selected, dx, kernel, stride, pad)


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
