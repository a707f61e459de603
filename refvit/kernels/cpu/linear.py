"""Linear on the CPU: the batch axes are flattened into rows and the products go to BLAS in row blocks.

A hand-written Numba loop would be far slower than BLAS ``gemm``, so this module only arranges
the data and the parallelism. The rows ``(n, in)`` are cut into equal blocks, one per
:data:`ROWS_PER_BLOCK` rows but at least two from 64 rows on, few for the forward
(:func:`forward_blocks`) and up to :data:`MAX_BLOCKS` for the backward (:func:`_blocks`); a ``prange``
over the blocks runs one single-threaded ``gemm`` per block (Numba's ``np.dot``), so the products of one
call use all of Numba's threads while BLAS keeps to one (see :mod:`refvit.kernels.cpu._threads`):

* forward, block ``r``: :math:`Y_r = X_r W^\\top`, then the bias added to the block's rows while
  they are still in the thread's cache (a separate ``y += bias`` pass over the whole output took
  about as long as the product at the nano models' shapes);
* forward of few rows with a large weight (fewer than :data:`FEW_ROWS` rows, at least
  :data:`LARGE_WEIGHT` weight elements: the last stage of the official models at batch 2), cut along the
  outputs instead, block ``k``: :math:`Y_{:,k} = X W_k^\\top` (:func:`cuts_outputs`). Row blocks
  of a few dozen rows each read the whole weight; output blocks read ``X``, which is small, and a part of
  the weight each;
* backward, block ``r``, all in one parallel region: :math:`\\partial X_r = G_r W`, the partial
  product :math:`G_r^\\top X_r` of ``dweight`` and the partial column sum of :math:`G_r` for
  ``dbias``; the partials are added in block order afterwards. Where the forward cuts the outputs,
  block ``k`` computes :math:`\\partial X` of the ``k``-th block of rows and
  :math:`\\partial W_k = G_{:,k}^\\top X` and the column sums of :math:`G_{:,k}` over all rows, with no
  partials to add.

The blocks depend on the shape only (the row count, and for the output blocks the weight), never on the
number of threads, so the results do not either. ``python examples/linear_shapes.py --cpu-time`` (one
thread, CPU time, float32, the eight (rows, in, out) shapes of the nano models, three alternating runs):
forward 3.9-4.3 ms and backward 7.8-9.3 ms in all, against 4.4-4.8 and 9.3-10.6 ms with a separate bias
pass, three parallel regions and 512-row blocks; PyTorch 2.13 (``--torch``) 3.1-3.4 and 8.3-11.4 ms. With
both threads (``--repeat 9``, two alternating runs), the forward's fewer blocks took the 1024-row shapes from
0.16-0.17 to 0.15 ms; the whole forward column moved from 2.03-2.08 to 1.96-2.01 ms.
"""
import math

import numpy as np
from numba import njit, prange

# Rows of the smallest block: at the nano models' 256 to 4096 rows a block still makes a
# well-shaped gemm, and 256 rows give two blocks, one per core of a laptop.
ROWS_PER_BLOCK = 128
# From twice this many rows a call is cut into at least two blocks, one per core of a laptop: at 64 and
# 128 rows (dualvit_nano's per-token layers) one block left a core idle. On 2 threads, the median of 200
# calls: forward (64, 256) -> 128 55 -> 44 us, (128, 128) -> 256 98 -> 70 us; backward 102 -> 64 and
# 187 -> 105 us.
MIN_ROWS_PER_BLOCK = 32
# More blocks only add partial products of ``dweight`` to sum.
MAX_BLOCKS = 16
MAX_FORWARD_BLOCKS = 8
# Few rows with a large weight (fewer than FEW_ROWS rows, at least LARGE_WEIGHT weight elements: stage 4 of
# the official models at batch 2, 7x7 tokens of 2 images) are cut along the outputs into OUTPUT_BLOCKS
# blocks, forward and backward. ``python examples/linear_shapes.py --repeat 5 --official`` (2 threads),
# range over 5 runs, row blocks -> output blocks, all seven shapes: forward 12.4-15.8 -> 10.5-12.4 ms,
# backward 28.0-36.4 -> 22.3-28.2 ms (docs/ops/linear.md has each shape). More blocks gained nothing in the
# forward, and in the backward each block's ``dx`` reads the whole weight again (scratch timings of a variant
# with one block per 256 outputs: (98, 768) -> 3072 backward 10.5-10.8 ms, with two 6.6-6.8). A small weight
# keeps the rows (scratch timing: (128, 128) -> 256 forward 0.067 against 0.076 ms).
FEW_ROWS = 128
LARGE_WEIGHT = 1 << 18
OUTPUT_BLOCKS = 2


def _rows(a):
    a = np.ascontiguousarray(a)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _at_least(rows):
    """Two blocks from ``2 * MIN_ROWS_PER_BLOCK`` rows on, else one."""
    return 2 if rows >= 2 * MIN_ROWS_PER_BLOCK else 1


def _blocks(rows):
    """Blocks of the backward: many, as the partial sums of ``dweight`` keep the products small."""
    return min(MAX_BLOCKS, max(_at_least(rows), -(-rows // ROWS_PER_BLOCK)))


def forward_blocks(rows):
    """Blocks of the forward: as few as keep both cores busy (two from 64 rows up to 2047 rows, one per
    1024 rows above, at most :data:`MAX_FORWARD_BLOCKS`), since each ``gemm`` call has a fixed cost and
    the forward has no partial sums to keep small. A row's result may depend on the block it falls in
    (BLAS picks its kernels by the block's size), so this depends on ``rows`` alone."""
    return min(MAX_FORWARD_BLOCKS, max(_at_least(rows), min(-(-rows // ROWS_PER_BLOCK), max(2, rows // 1024))))


def cuts_outputs(rows, in_features, out_features):
    """Whether the products are cut along the outputs (few rows, a large weight) instead of the rows:
    fixed by the shape alone, so the results do not depend on the number of threads."""
    return rows < FEW_ROWS and in_features * out_features >= LARGE_WEIGHT


@njit(cache=True)
def _block_rows(block, rows, blocks):
    """``(first, stop)``: the rows of ``block`` when ``rows`` rows are cut into ``blocks`` equal blocks."""
    size = -(-rows // blocks)
    return min(rows, block * size), min(rows, (block + 1) * size)


@njit(cache=True, parallel=True)
def _forward_blocks(x, wt, bias, has_bias, y, blocks):
    """``y[rows of r] = x[rows of r] @ wt (+ bias)`` for every block ``r``, one ``prange`` iteration each
    (``wt`` is the weight's transposed view, Fortran-ordered)."""
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), x.shape[0], blocks)
        if first < stop:
            np.dot(x[first:stop], wt, y[first:stop])
            if has_bias:
                for i in range(first, stop):
                    for j in range(y.shape[1]):
                        y[i, j] += bias[j]


@njit(cache=True, parallel=True)
def _forward_columns(x, w, bias, has_bias, y, blocks):
    """``y[:, outputs of k] = x @ w[outputs of k].T (+ bias)`` for every block ``k`` of outputs, one ``prange``
    iteration each: the product goes to a block of its own, then into ``y``'s columns with the bias."""
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), w.shape[0], blocks)
        if first < stop:
            part = np.dot(x, w[first:stop].T)
            for i in range(x.shape[0]):
                for j in range(stop - first):
                    y[i, first + j] = part[i, j] + bias[first + j] if has_bias else part[i, j]


@njit(cache=True, parallel=True)
def _backward_blocks(g, x, w, dx, dweight_parts, dbias_parts):
    """For every block ``r``: ``dx[rows of r] = g[rows of r] @ w``, ``dweight_parts[r] = g[rows of r].T @
    x[rows of r]`` and ``dbias_parts[r]`` the column sums of ``g[rows of r]`` (the parts start at zero)."""
    blocks = dweight_parts.shape[0]
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), x.shape[0], blocks)
        if first < stop:
            np.dot(g[first:stop], w, dx[first:stop])
            np.dot(g[first:stop].T, x[first:stop], dweight_parts[block])
            for i in range(first, stop):
                for j in range(g.shape[1]):
                    dbias_parts[block, j] += g[i, j]


@njit(cache=True, parallel=True)
def _backward_columns(g, x, w, dx, dweight, dbias, blocks):
    """Few rows, a large weight: block ``k`` computes ``dx`` for the ``k``-th block of rows (``g[rows] @ w``) and
    ``dweight``, ``dbias`` for the ``k``-th block of outputs, from its own contiguous copy of those columns of
    ``g`` transposed (``g[:, outputs].T @ x`` over all rows, and their row sums)."""
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), x.shape[0], blocks)
        if first < stop:
            np.dot(g[first:stop], w, dx[first:stop])
        first, stop = _block_rows(np.int64(block), w.shape[0], blocks)
        if first < stop:
            columns = np.ascontiguousarray(g[:, first:stop].T)
            np.dot(columns, x, dweight[first:stop])
            for o in range(stop - first):
                total = columns.dtype.type(0.0)
                for i in range(columns.shape[1]):
                    total += columns[o, i]
                dbias[first + o] = total


def forward(x, weight, bias):
    rows = _rows(x)
    y = np.empty((rows.shape[0], weight.shape[0]), x.dtype)
    row_products(rows, weight, bias, y)
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def backward(dout, x, weight):
    dx, dweight, dbias = row_gradients(_rows(dout), _rows(x), weight)
    return dx.reshape(x.shape), dweight, dbias


def row_products(rows, weight, bias, y):
    """``y (n, out) = rows (n, in) @ weight^T (+ bias)`` in the forward's blocks (also ``linear_gelu``'s)."""
    if rows.shape[0] and rows.shape[1]:
        # one signature with and without a bias: an empty stand-in and a flag instead of None
        b = np.empty(0, rows.dtype) if bias is None else np.ascontiguousarray(bias)
        if cuts_outputs(rows.shape[0], weight.shape[1], weight.shape[0]):
            _forward_columns(rows, np.ascontiguousarray(weight), b, bias is not None, y, OUTPUT_BLOCKS)
            return
        # W^T as a Fortran-ordered view: BLAS reads it transposed, nothing is copied
        _forward_blocks(rows, np.ascontiguousarray(weight).T, b, bias is not None, y, forward_blocks(rows.shape[0]))
    else:
        y[:] = 0.0 if bias is None else bias


def row_gradients(rows_dout, rows_x, weight):
    """``(dx (n, in), dweight, dbias)`` from ``rows_dout (n, out)`` and ``rows_x (n, in)`` in the backward's
    blocks, the per-block parts of ``dweight`` and ``dbias`` added in block order (also ``linear_gelu``'s).
    Where the forward cuts the outputs, ``dweight`` and ``dbias`` are cut the same way, without parts."""
    if rows_x.shape[0] and rows_x.shape[1] and cuts_outputs(rows_x.shape[0], weight.shape[1], weight.shape[0]):
        dx = np.empty(rows_x.shape, rows_x.dtype)
        dweight = np.empty(weight.shape, rows_x.dtype)
        dbias = np.empty(weight.shape[0], rows_x.dtype)
        _backward_columns(rows_dout, rows_x, np.ascontiguousarray(weight), dx, dweight, dbias, OUTPUT_BLOCKS)
        return dx, dweight, dbias
    blocks = _blocks(rows_x.shape[0])
    dx = np.empty(rows_x.shape, rows_x.dtype)
    dweight_parts = np.zeros((blocks,) + weight.shape, rows_x.dtype)
    dbias_parts = np.zeros((blocks, weight.shape[0]), rows_x.dtype)
    if rows_x.shape[0] and rows_x.shape[1] and rows_dout.shape[1]:
        _backward_blocks(rows_dout, rows_x, np.ascontiguousarray(weight), dx, dweight_parts, dbias_parts)
    else:
        dx[:] = 0.0
    dweight, dbias = dweight_parts[0].copy(), dbias_parts[0].copy()
    for block in range(1, blocks):
        dweight += dweight_parts[block]
        dbias += dbias_parts[block]
    return dx, dweight, dbias
