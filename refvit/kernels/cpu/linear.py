"""Linear on the CPU: the batch axes are flattened into rows and the products go to BLAS in row blocks.

A hand-written Numba loop would be far slower than BLAS ``gemm``, so this module only arranges
the data and the parallelism. The rows ``(n, in)`` are cut into fixed blocks of
:data:`ROWS_PER_BLOCK`; a ``prange`` over the blocks runs one single-threaded ``gemm`` per block
(Numba's ``np.dot``), so the products of one call use all of Numba's threads while BLAS keeps
to one (see :mod:`refvit.kernels.cpu._threads`):

* forward, block ``r``: :math:`Y_r = X_r W^\\top` (+ bias);
* ``dx``, block ``r``: :math:`\\partial X_r = G_r W`;
* ``dweight``: :math:`G^\\top X = \\sum_r G_r^\\top X_r`, one partial product per block, added in
  block order afterwards; ``dbias`` a column sum.

The blocks depend on the row count only, never on the number of threads, so the results do not
either. Measured on 2 cores (float32, 4096 rows, 32 -> 96): forward 0.20 ms vs 0.33 ms with one
``gemm`` on one thread.
"""
import math

import numpy as np
from numba import njit, prange


ROWS_PER_BLOCK = 512


def _rows(a):
    a = np.ascontiguousarray(a)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _blocks(rows):
    return max(1, -(-rows // ROWS_PER_BLOCK))


@njit(cache=True)
def _block_rows(block, rows, blocks):
    """``(first, stop)``: the rows of ``block`` when ``rows`` rows are cut into ``blocks`` equal blocks."""
    size = -(-rows // blocks)
    return min(rows, block * size), min(rows, (block + 1) * size)


@njit(cache=True, parallel=True)
def _block_products(a, b, out, blocks):
    """``out[rows of block r] = a[rows of block r] @ b`` for every block, one ``prange`` iteration each."""
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), a.shape[0], blocks)
        if first < stop:
            np.dot(a[first:stop], b, out[first:stop])


@njit(cache=True, parallel=True)
def _block_outer_products(g, x, partials):
    """``partials[r] = g[rows of block r].T @ x[rows of block r]`` (zero for an empty block)."""
    for block in prange(partials.shape[0]):
        first, stop = _block_rows(np.int64(block), g.shape[0], partials.shape[0])
        if first < stop:
            np.dot(g[first:stop].T, x[first:stop], partials[block])


def forward(x, weight, bias):
    rows = _rows(x)
    y = np.empty((rows.shape[0], weight.shape[0]), x.dtype)
    if rows.shape[0] and rows.shape[1]:
        _block_products(rows, np.ascontiguousarray(weight.T), y, _blocks(rows.shape[0]))
    else:
        y[:] = 0.0
    if bias is not None:
        y += bias
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def backward(dout, x, weight):
    rows_x = _rows(x)
    rows_dout = _rows(dout)
    dx = np.empty(rows_x.shape, x.dtype)
    partials = np.zeros((_blocks(rows_x.shape[0]),) + weight.shape, x.dtype)
    if all(rows_dout.shape) and rows_x.shape[1]:
        _block_products(rows_dout, np.ascontiguousarray(weight), dx, partials.shape[0])
        _block_outer_products(rows_dout, rows_x, partials)
    else:
        dx[:] = 0.0
    dweight = partials[0].copy()
    for partial in partials[1:]:
        dweight += partial
    return dx.reshape(x.shape), dweight, rows_dout.sum(axis=0)
