"""Linear then GELU on the CPU: linear's row-block kernels and GELU over the same blocks, in one op call.

The batch axes are flattened into rows ``(n, in)`` and cut into the blocks of
:mod:`refvit.kernels.cpu.linear` (:func:`~refvit.kernels.cpu.linear.forward_blocks` in the forward, its
``_blocks`` in the backward: they depend on the row count only, so the results do not depend on the
number of threads; linear's product may instead cut few rows with a large weight along the outputs, and
GELU still runs over the row blocks). Each step is two parallel loops over the blocks, one ``prange``
iteration per block:

* forward: linear's kernel, :math:`H_r = X_r W^\\top + b` (one single-threaded ``gemm`` per block, the
  bias added to the block's rows), then :math:`Y_r = \\operatorname{gelu}(H_r)`; ``h`` (the backward's
  input) and ``y`` are both kept;
* backward: :math:`\\partial H_r = G_r \\odot \\operatorname{gelu}'(H_r)`, then linear's backward kernel on
  it: :math:`\\partial X_r = \\partial H_r W`, the partial product :math:`\\partial H_r^\\top X_r` of
  ``dweight`` and the partial column sum of :math:`\\partial H_r` for ``dbias``, added in block order
  afterwards.

GELU is :func:`refvit.kernels.cpu.gelu.gelu_stretch`, the code of the ``gelu`` kernels, and the products
are linear's kernels on the same blocks, so on the ``cpu`` backend ``linear_gelu`` gives the bits of
``gelu(linear(x))`` made of the two ops, forward and every gradient.

Why two loops and not GELU on each block right after its ``gemm`` (the block still in cache): that was
measured slower on one thread (``(4096, 32) -> 96``, float32: forward 0.84 ms against 0.78 ms, backward
0.97 against 0.91; ``(1024, 64) -> 192``: 0.48 against 0.46, 0.81 against 0.77). At the nano models'
shapes the hidden activations (at most 1.5 MiB) stay in the L2 cache between the two loops anyway; what
the op saves is a second op call (checks, dispatch, a tape node, a parallel region). Timings:
``docs/ops/linear_gelu.md``.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.gelu import gelu_stretch
from refvit.kernels.cpu.linear import _block_rows, _blocks, _rows, forward_blocks, row_gradients, row_products


@njit(cache=True, parallel=True)
def _gelu_blocks(rows_in, upstream, result, blocks, tanh_approx, gradient):
    """``result = gelu(rows_in)`` (forward) or ``result = upstream * gelu'(rows_in)`` (``gradient``), block by
    block of rows, one ``prange`` iteration each (the arrays ``(n, out)``, C-contiguous; ``upstream`` is not
    read in the forward)."""
    width = rows_in.shape[1]
    flat_in, flat_upstream, flat_result = rows_in.reshape(rows_in.size), upstream.reshape(upstream.size), \
        result.reshape(result.size)
    for block in prange(blocks):
        first, stop = _block_rows(np.int64(block), rows_in.shape[0], blocks)
        span = slice(first * width, stop * width)
        gelu_stretch(flat_in[span], flat_upstream[span], flat_result[span], tanh_approx, gradient)


def forward(x, weight, bias, tanh_approx):
    rows = _rows(x)
    out_shape = x.shape[:-1] + (weight.shape[0],)
    h = np.empty((rows.shape[0], weight.shape[0]), x.dtype)
    y = np.empty_like(h)
    row_products(rows, weight, bias, h)
    _gelu_blocks(h, h, y, forward_blocks(rows.shape[0]), tanh_approx, False)
    return y.reshape(out_shape), h.reshape(out_shape)


def backward(dout, x, weight, pre_activation, tanh_approx):
    rows_x = _rows(x)
    dh = np.empty((rows_x.shape[0], weight.shape[0]), x.dtype)
    _gelu_blocks(_rows(pre_activation), _rows(dout), dh, _blocks(rows_x.shape[0]), tanh_approx, True)
    dx, dweight, dbias = row_gradients(dh, rows_x, weight)
    return dx.reshape(x.shape), dweight, dbias
