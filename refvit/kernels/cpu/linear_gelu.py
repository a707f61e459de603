"""Linear then GELU on the CPU, in the row blocks of :mod:`refvit.kernels.cpu.linear`, GELU applied to each
block while its rows are still in the thread's cache.

The batch axes are flattened into rows ``(n, in)`` and cut into the blocks of linear's kernels (its
:func:`~refvit.kernels.cpu.linear.forward_blocks` in the forward, its ``_blocks`` in the backward:
they depend on the row count only, so the results do not depend on the number of threads); one
``prange`` iteration per block:

* forward, block ``r``: :math:`H_r = X_r W^\\top + b` (one single-threaded ``gemm``, the bias added
  row by row), then :math:`Y_r = \\operatorname{gelu}(H_r)`; both ``h`` (the backward's input) and
  ``y`` are written;
* backward, block ``r``, all in one parallel region: :math:`\\partial H_r = G_r \\odot
  \\operatorname{gelu}'(H_r)`, then linear's three products on it: :math:`\\partial X_r = \\partial H_r W`,
  the partial product :math:`\\partial H_r^\\top X_r` of ``dweight`` and the partial column sum of
  :math:`\\partial H_r` for ``dbias``; the partials are added in block order afterwards.

GELU is :func:`refvit.kernels.cpu.gelu.gelu_stretch`, the code of the ``gelu`` kernels, and the
products are linear's, in the same blocks, so on the ``cpu`` backend ``linear_gelu`` gives the bits
of ``gelu(linear(x))`` made of the two ops, forward and every gradient; it only saves the separate
pass of GELU over the hidden activations (reading ``h`` and writing ``y`` again, and in the backward
reading ``dout`` and ``h`` and writing ``dh`` before the products read it).
Timings: ``docs/ops/linear_gelu.md``.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.gelu import gelu_stretch
from refvit.kernels.cpu.linear import _block_rows, _blocks, _rows, forward_blocks


@njit(cache=True, parallel=True)
def _forward_blocks(x, wt, bias, has_bias, h, y, blocks, tanh_approx):
    """``h[rows of r] = x[rows of r] @ wt (+ bias)`` and ``y[rows of r] = gelu(h[rows of r])`` for every
    block ``r``, one ``prange`` iteration each (``wt`` is the weight's transposed view, Fortran-ordered)."""
    width = h.shape[1]
    flat_h, flat_y = h.reshape(h.size), y.reshape(y.size)
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), x.shape[0], blocks)
        if first < stop:
            np.dot(x[first:stop], wt, h[first:stop])
            if has_bias:
                for i in range(first, stop):
                    for j in range(width):
                        h[i, j] += bias[j]
            stretch = flat_h[first * width:stop * width]
            gelu_stretch(stretch, stretch, flat_y[first * width:stop * width], tanh_approx, False)


@njit(cache=True, parallel=True)
def _backward_blocks(g, h, x, w, dh, dx, dweight_parts, dbias_parts, tanh_approx):
    """For every block ``r``: ``dh[rows of r] = g[rows of r] * gelu'(h[rows of r])``, then ``dx[rows of r] =
    dh[rows of r] @ w``, ``dweight_parts[r] = dh[rows of r].T @ x[rows of r]`` and ``dbias_parts[r]`` the
    column sums of ``dh[rows of r]`` (the parts start at zero)."""
    blocks = dweight_parts.shape[0]
    width = h.shape[1]
    flat_g, flat_h, flat_dh = g.reshape(g.size), h.reshape(h.size), dh.reshape(dh.size)
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), x.shape[0], blocks)
        if first < stop:
            span = slice(first * width, stop * width)
            gelu_stretch(flat_h[span], flat_g[span], flat_dh[span], tanh_approx, True)
            np.dot(dh[first:stop], w, dx[first:stop])
            np.dot(dh[first:stop].T, x[first:stop], dweight_parts[block])
            for i in range(first, stop):
                for j in range(width):
                    dbias_parts[block, j] += dh[i, j]


def forward(x, weight, bias, tanh_approx):
    rows = _rows(x)
    out_shape = x.shape[:-1] + (weight.shape[0],)
    h = np.empty((rows.shape[0], weight.shape[0]), x.dtype)
    y = np.empty_like(h)
    # one signature with and without a bias: an empty stand-in and a flag instead of None
    b = np.empty(0, x.dtype) if bias is None else np.ascontiguousarray(bias)
    # W^T as a Fortran-ordered view: BLAS reads it transposed, nothing is copied
    _forward_blocks(rows, np.ascontiguousarray(weight).T, b, bias is not None, h, y, forward_blocks(rows.shape[0]),
                    tanh_approx)
    return y.reshape(out_shape), h.reshape(out_shape)


def backward(dout, x, weight, pre_activation, tanh_approx):
    rows_x = _rows(x)
    blocks = _blocks(rows_x.shape[0])
    dh = np.empty((rows_x.shape[0], weight.shape[0]), x.dtype)
    dx = np.empty(rows_x.shape, x.dtype)
    dweight_parts = np.zeros((blocks,) + weight.shape, x.dtype)
    dbias_parts = np.zeros((blocks, weight.shape[0]), x.dtype)
    _backward_blocks(_rows(dout), _rows(pre_activation), rows_x, np.ascontiguousarray(weight), dh, dx,
                     dweight_parts, dbias_parts, tanh_approx)
    dweight, dbias = dweight_parts[0].copy(), dbias_parts[0].copy()
    for block in range(1, blocks):
        dweight += dweight_parts[block]
        dbias += dbias_parts[block]
    return dx.reshape(x.shape), dweight, dbias
