"""Linear on the GPU: one tiled matrix product kernel serves the forward pass and both
matrix gradients; a column-sum kernel gives the bias gradient.

``_matmul_kernel`` computes ``out (M, N) = op(a) (M, K) @ op(b) (K, N) (+ bias)``, where
``op`` optionally transposes (the operand is read transposed; nothing is copied):

* forward: ``y = X W^T + b``   (``a = X``, ``b = W`` read transposed)
* ``dX = G W``                 (no transposes)
* ``dW = G^T X``               (``a = G`` read transposed)

Each ``TILE x TILE`` block of threads owns a ``TILE x TILE`` tile of ``out``; it walks along
``K`` one tile at a time, staging the two operand tiles in shared memory (float64, so float32
inputs are accumulated in float64 and rounded once on store).
"""
import numpy as np
from numba import cuda, float64

from refvit.kernels.cuda._device import THREADS_2D, any_device, empty, grid_1d, to_device, to_host_unless

TILE = THREADS_2D[0]


@cuda.jit
def _matmul_kernel(a, b, out, transpose_a, transpose_b, bias, has_bias):
    tile_a = cuda.shared.array((TILE, TILE), float64)
    tile_b = cuda.shared.array((TILE, TILE), float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    col = cuda.blockIdx.x * TILE + tx
    row = cuda.blockIdx.y * TILE + ty
    rows, cols = out.shape
    depth = a.shape[0] if transpose_a else a.shape[1]
    acc = 0.0
    for start in range(0, depth, TILE):
        k_a = start + tx
        value_a = 0.0
        if row < rows and k_a < depth:
            value_a = a[k_a, row] if transpose_a else a[row, k_a]
        tile_a[ty, tx] = value_a
        k_b = start + ty
        value_b = 0.0
        if col < cols and k_b < depth:
            value_b = b[col, k_b] if transpose_b else b[k_b, col]
        tile_b[ty, tx] = value_b
        cuda.syncthreads()
        for k in range(TILE):
            acc += tile_a[ty, k] * tile_b[k, tx]
        cuda.syncthreads()
    if row < rows and col < cols:
        if has_bias:
            acc += bias[col]
        out[row, col] = acc


def _matmul(a, b, out, transpose_a=False, transpose_b=False, bias=None):
    rows, cols = out.shape
    if rows == 0 or cols == 0:
        return
    blocks = ((cols + TILE - 1) // TILE, (rows + TILE - 1) // TILE)
    has_bias = bias is not None
    if not has_bias:
        bias = out.reshape(out.size)  # never read
    _matmul_kernel[blocks, (TILE, TILE)](a, b, out, transpose_a, transpose_b, bias, has_bias)


@cuda.jit
def _column_sum_kernel(a, out):
    rows, cols = a.shape
    col = cuda.grid(1)
    if col < cols:
        total = 0.0
        for row in range(rows):
            total += a[row, col]
        out[col] = total


def _rows(a):
    shape = tuple(a.shape)
    return a.reshape(int(np.prod(shape[:-1], dtype=np.int64)), shape[-1])


def forward(x, weight, bias):
    on_device = any_device(x, weight, bias)
    x, weight, bias = to_device(x, weight, bias)
    out_features = weight.shape[0]
    rows_x = _rows(x)
    y = empty(tuple(x.shape)[:-1] + (out_features,), x.dtype)
    _matmul(rows_x, weight, _rows(y), transpose_b=True, bias=bias)
    return to_host_unless(on_device, y)


def backward(dout, x, weight):
    on_device = any_device(dout, x, weight)
    dout, x, weight = to_device(dout, x, weight)
    rows_x, rows_dout = _rows(x), _rows(dout)
    dx = empty(x.shape, x.dtype)
    _matmul(rows_dout, weight, _rows(dx))
    dweight = empty(weight.shape, weight.dtype)
    _matmul(rows_dout, rows_x, dweight, transpose_a=True)
    dbias = empty((weight.shape[0],), weight.dtype)
    _column_sum_kernel[grid_1d(weight.shape[0])](rows_dout, dbias)
    return to_host_unless(on_device, dx, dweight, dbias)
