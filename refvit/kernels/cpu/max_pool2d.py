r"""Max pooling on the CPU, channels-last, with the index of each maximum kept for backward.

* forward: ``prange`` over output rows ``(b, u)``. Each output pixel starts at :math:`-\infty`
  with its window's first in-range input as the selection, then scans its in-range taps row by
  row; an input replaces the current maximum when it is strictly larger, or when it is the
  first NaN (PyTorch's scan order, first maximum wins). ``selected`` stores ``h*W + w``.
* backward (gather): ``prange`` over input rows ``(b, h)``; input pixel ``(h, w)`` looks at the
  outputs whose window covers it and adds :math:`\delta_{b,u,v,c}` where ``selected`` names it.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._pool import pool_grad_row, pool_row


@njit(cache=True, parallel=True)
def _forward(x, out, selected, kernel, stride, pad):
    out_h = out.shape[1]
    for row in prange(out.shape[0] * out_h):
        b, u = row // out_h, row % out_h
        pool_row(x[b], out[b, u], selected[b, u], u, kernel, stride, pad)


@njit(cache=True, parallel=True)
def _backward(dout, selected, dx, kernel, stride, pad):
    height = dx.shape[1]
    for row in prange(dx.shape[0] * height):
        b, h = row // height, row % height
        pool_grad_row(dout, selected, dx, b, h, kernel, stride, pad)


def _window_args(window):
    """The kernels' geometry arguments: ``kernel``, ``stride``, ``pad``, each ``(along H, along W)``."""
    return tuple(window.kernel), tuple(window.stride), tuple(window.padding)


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
