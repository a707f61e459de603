r"""Dense 2-D convolution with stride 1 and few input channels: one matrix product per kernel row.

With stride 1 and no dilation, output pixel ``(b, u, v)`` reads input row ``u - p_h + i`` for kernel
row ``i``, and in it the ``k_w`` pixels from ``v - p_w`` on. Copy those ``k_w`` pixels once per
output column into *wide rows* (zero where they fall in the padding):

.. math::  R_{b,\,h',\,v,\,(j, c)} = \tilde x_{b,\,h' - p_h,\,v - p_w + j,\,c},
           \qquad h' \in [0, H + 2p_h)

Then, with ``M_i (k_w C_in, C_out)`` the weights of kernel row ``i`` (rows ordered ``(j, c)``),

.. math::  y_{b,u,v} = \beta + \sum_i R_{b,\,u + i,\,v}\, M_i

and for fixed ``b`` and ``i`` the rows ``R_{b, u+i, v}`` of a run of output rows ``u`` are consecutive
rows of ``R``: each kernel row is one matrix product over a slice of ``R`` as it lies in memory. ``R`` is
``k_w`` copies of the input, where the patch matrix of :mod:`refvit.kernels.cpu.conv2d_gemm` is
``k_h k_w`` copies; the price is ``k_h`` products with ``K = k_w C_in`` instead of one with
``K = k_h k_w C_in``, which BLAS runs less efficiently as ``K`` shrinks. The blocks are runs of whole
output rows of one image (fixed by the shape, never by the thread count); each ``prange`` iteration
adds its ``k_h`` products in kernel-row order in a per-thread workspace and writes its output rows with
the bias added.

Backward: ``dx`` is this forward on ``dout`` with the flipped, transposed weight
(:func:`~refvit.kernels.cpu.conv2d_gemm.transposed_window`); ``dweight`` the same wide rows of ``x`` with
the same blocks, ``\partial L/\partial M_i = \sum_r \Delta_r^\top R_{r,i}`` (:func:`weight_gradient`),
the per-block partials added in block order. One thread, CPU time, the least of 9 calls, ``dweight`` alone of
dualvit_nano's 3x3 16 -> 16 at (64, 16, 16, 16): 2.06 ms with the patch products, 0.94-1.07 ms here.
"""
import numpy as np
from numba import config, get_thread_id, njit, prange

from refvit.kernels.cpu import conv2d_gemm
from refvit.kernels.cpu._workspace import scratch

# The path is taken where a wide row (k_w * C_in numbers) is at most this long: measured on one thread,
# CPU time, the least of 15 calls, forward at (64, 16, 16, C) 3x3 -> C: C = 16 (48 numbers) 2.15 ms with
# the patch matrix, 1.27 ms here; C = 32 (96 numbers) 4.99 against 5.03 ms.
MAX_WIDE_ROW = 48
# dweight alone (:func:`weight_gradient`) is taken up to this wide row, also where the forward and dx take
# the patch products: one thread, CPU time, the least of 7 calls, 3x3 stride 1: (64, 16, 16, 32) -> 32
# (coatnet_nano) 5.17 ms with the patch products, 3.03 ms here; (2, 112, 112, 32) -> 32 (dualvit_s) 8.46 against
# 4.90 ms; but (2, 112, 112, 64) -> 64 (coatnet_0, 192 numbers) 23.8 against 27.4 ms.
MAX_WEIGHT_WIDE_ROW = 96
# Output pixels per block (at least one output row): a block's wide rows and products stay in L2.
BLOCK_PIXELS = 256


def takes(in_channels, window):
    """Whether this path runs a ``groups == 1`` convolution of ``in_channels`` with ``window``: not ``1x1``,
    stride 1, no dilation, padding at most ``k - 1`` (so that ``dx`` is again such a convolution), short
    wide rows."""
    (kh, kw), (ph, pw) = window.kernel, window.padding
    if (kh, kw) == (1, 1):  # a 1x1 window: the gemm path multiplies x itself, with no copy
        return False
    return (tuple(window.stride) == (1, 1) and tuple(window.dilation) == (1, 1) and ph <= kh - 1 and pw <= kw - 1
            and kw * in_channels <= MAX_WIDE_ROW)


def takes_weight(in_channels, window):
    """Whether :func:`weight_gradient` gives ``dweight`` of a ``groups == 1`` convolution (the windows of
    :func:`takes`, with wide rows up to ``MAX_WEIGHT_WIDE_ROW``)."""
    (kh, kw), (ph, pw) = window.kernel, window.padding
    return ((kh, kw) != (1, 1) and tuple(window.stride) == (1, 1) and tuple(window.dilation) == (1, 1)
            and ph <= kh - 1 and pw <= kw - 1 and kw * in_channels <= MAX_WEIGHT_WIDE_ROW)


@njit(cache=True, parallel=True)
def _fill_wide_rows(x, wide, pad_h, pad_w):
    """``wide (B, H + 2 p_h, W_out, k_w C)`` from ``x (B, H, W, C)``: one ``prange`` iteration per wide row."""
    batch, height, width, channels = x.shape
    padded_h, out_w, run = wide.shape[1], wide.shape[2], wide.shape[3]
    taps = run // channels
    for row in prange(batch * padded_h):
        b = row // padded_h
        h = row % padded_h - pad_h
        target = wide[b, row % padded_h]
        for v in range(out_w):
            pixel = target[v]
            for j in range(taps):
                w = v - pad_w + j
                if 0 <= h < height and 0 <= w < width:
                    source = x[b, h, w]
                    for c in range(channels):
                        pixel[j * channels + c] = source[c]
                else:
                    for c in range(channels):
                        pixel[j * channels + c] = 0.0


@njit(cache=True, parallel=True)
def _row_products(wide, matrices, bias, sums, terms, out, rows_per_block):
    """``out (B, H_out * W_out, C_out)`` block by block: ``rows_per_block`` output rows of one image per
    ``prange`` iteration, the products of the kernel rows added in order in the thread's ``sums``
    (``terms`` holds each further product), then written with ``bias`` added."""
    batch, padded_h, out_w, run = wide.shape
    out_h = out.shape[1] // out_w
    flat = wide.reshape(batch * padded_h * out_w, run)
    per_image = -(-out_h // rows_per_block)
    for block in prange(batch * per_image):
        b = block // per_image
        first = (block % per_image) * rows_per_block
        count = (min(out_h, first + rows_per_block) - first) * out_w
        thread = get_thread_id()
        total, term = sums[thread, :count], terms[thread, :count]
        start = (b * padded_h + first) * out_w
        np.dot(flat[start:start + count], matrices[0], total)
        for i in range(1, matrices.shape[0]):
            shifted = start + i * out_w
            np.dot(flat[shifted:shifted + count], matrices[i], term)
            for n in range(count):
                for k in range(total.shape[1]):
                    total[n, k] += term[n, k]
        target = out[b, first * out_w:first * out_w + count]
        for n in range(count):
            for k in range(total.shape[1]):
                target[n, k] = total[n, k] + bias[k]


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    batch, height, width, channels = x.shape
    out_channels, _, kh, kw = weight.shape
    (pad_h, pad_w) = window.padding
    out_h, out_w = window.output_size(height, width)
    wide = scratch("conv2d_rows.wide", (batch, height + 2 * pad_h, out_w, kw * channels), x.dtype)
    _fill_wide_rows(np.ascontiguousarray(x), wide, pad_h, pad_w)
    matrices = np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(kh, kw * channels, out_channels)
    rows_per_block = min(out_h, max(1, BLOCK_PIXELS // out_w))
    sums = scratch("conv2d_rows.sums", (config.NUMBA_NUM_THREADS, rows_per_block * out_w, out_channels), x.dtype)
    terms = scratch("conv2d_rows.terms", sums.shape, x.dtype)
    out = np.empty((batch, out_h * out_w, out_channels), dtype=x.dtype)
    _row_products(wide, matrices, np.zeros(out_channels, x.dtype) if bias is None else bias, sums, terms, out,
                  rows_per_block)
    return out.reshape(batch, out_h, out_w, out_channels)


@njit(cache=True, parallel=True)
def _row_weight_products(wide, dout, partials, rows_per_block):
    """``partials[r, i] = dout_r^T R_{r, i} (C_out, k_w C_in)``: block ``r`` (the output rows of
    :func:`_row_products`' blocks) against its wide rows shifted down by kernel row ``i``;
    ``dout (B, H_out * W_out, C_out)``."""
    batch, padded_h, out_w, run = wide.shape
    out_h = dout.shape[1] // out_w
    flat = wide.reshape(batch * padded_h * out_w, run)
    per_image = -(-out_h // rows_per_block)
    for block in prange(batch * per_image):
        b = block // per_image
        first = (block % per_image) * rows_per_block
        count = (min(out_h, first + rows_per_block) - first) * out_w
        grads = dout[b, first * out_w:first * out_w + count]
        start = (b * padded_h + first) * out_w
        for i in range(partials.shape[1]):
            shifted = start + i * out_w
            np.dot(grads.T, flat[shifted:shifted + count], partials[block, i])


def weight_gradient(dout, x, weight, window):
    """``dweight`` from the wide rows of ``x``: per block of output rows and kernel row ``i``, one product
    ``dout_r^T R_{r, i}``; the partials are added in block order (the blocks are fixed by the shape)."""
    batch, height, width, channels = x.shape
    out_channels, _, kh, kw = weight.shape
    (pad_h, pad_w) = window.padding
    out_h, out_w = window.output_size(height, width)
    wide = scratch("conv2d_rows.wide", (batch, height + 2 * pad_h, out_w, kw * channels), x.dtype)
    _fill_wide_rows(np.ascontiguousarray(x), wide, pad_h, pad_w)
    rows_per_block = min(out_h, max(1, BLOCK_PIXELS // out_w))
    blocks = batch * -(-out_h // rows_per_block)
    partials = np.empty((blocks, kh, out_channels, kw * channels), dtype=x.dtype)
    _row_weight_products(wide, np.ascontiguousarray(dout).reshape(batch, out_h * out_w, out_channels), partials,
                         rows_per_block)
    dmatrix = partials.sum(axis=0) if blocks > 1 else partials[0]
    return np.ascontiguousarray(dmatrix.reshape(kh, out_channels, kw, channels).transpose(1, 3, 0, 2))


def backward(dout, x, weight, has_bias, window, channel_sums, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``: ``dx`` by :func:`forward` (or the patch products where this path does
    not take the transposed convolution), ``dweight`` by :func:`weight_gradient`;
    ``needs``: whether ``dx`` and ``dweight`` are wanted (``None`` in their place when not, and not computed)."""
    dx = dweight = None
    if needs[0]:
        transposed = conv2d_gemm.transposed_window(window)
        flipped = conv2d_gemm.transposed_weight(weight)
        dx_path = forward if takes(weight.shape[0], transposed) else conv2d_gemm.forward
        dx = dx_path(np.ascontiguousarray(dout), flipped, None, transposed)
    if needs[1]:
        dweight = weight_gradient(dout, x, weight, window)
    return dx, dweight, channel_sums(dout) if has_bias else None
