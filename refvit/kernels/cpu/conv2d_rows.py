r"""Dense 2-D convolution with few input channels: one matrix product per kernel row.

With no dilation, output pixel ``(b, u, v)`` reads input row ``u s_h - p_h + i`` for kernel row ``i``, and
in it the ``k_w`` pixels from ``v s_w - p_w`` on. Copy those ``k_w`` pixels once per output column into
*wide rows* (zero where they fall in the padding), split by the phase ``f`` of the padded row number
modulo the stride:

.. math::  R_{b,\,f,\,r,\,v,\,(j, c)} = \tilde x_{b,\,r s_h + f - p_h,\,v s_w - p_w + j,\,c}

Then, with ``M_i (k_w C_in, C_out)`` the weights of kernel row ``i`` (rows ordered ``(j, c)``),

.. math::  y_{b,u,v} = \beta + \sum_i R_{b,\,i \bmod s_h,\,u + \lfloor i / s_h \rfloor,\,v}\, M_i

and for fixed ``b`` and ``i`` the rows read for a run of output rows ``u`` are consecutive rows of ``R``:
each kernel row is one matrix product over a slice of ``R`` as it lies in memory. ``R`` is about
``k_w / s_w`` copies of the input, where the patch matrix of :mod:`refvit.kernels.cpu.conv2d_gemm` is
``k_h k_w / (s_h s_w)``; the price is ``k_h`` products with ``K = k_w C_in`` instead of one with
``K = k_h k_w C_in``, which BLAS runs less efficiently as ``K`` shrinks. The blocks are runs of whole
output rows of one image (fixed by the shape, never by the thread count); each ``prange`` iteration
adds its ``k_h`` products in kernel-row order in a per-thread workspace and writes its output rows with
the bias added.

Backward: ``dx`` of stride 1 is this forward on ``dout`` with the flipped, transposed weight
(:func:`~refvit.kernels.cpu.conv2d_gemm.transposed_window`), of other strides the gemm path's fold;
``dweight`` the same wide rows of ``x`` with the same blocks,
``\partial L/\partial M_i = \sum_r \Delta_r^\top R_{r,i}`` (:func:`weight_gradient`), the per-block
partials added in block order. One thread, CPU time, the least of 9 calls, ``dweight`` alone of
dualvit_nano's 3x3 16 -> 16 at (64, 16, 16, 16): 2.06 ms with the patch products, 0.94-1.07 ms here.
"""
import numpy as np
from numba import config, get_thread_id, njit, prange

from refvit.kernels.cpu import conv2d_gemm
from refvit.kernels.cpu._workspace import scratch

# The path is taken where a wide row (k_w * C_in numbers) is at most this long: measured on one thread,
# CPU time, the least of 15 calls, forward at (64, 16, 16, C) 3x3 -> C: C = 16 (48 numbers) 2.15 ms with
# the patch matrix, 1.27 ms here; C = 32 (96 numbers) 4.99 against 5.03 ms. Strided, the least of 7 calls,
# forward / dweight alone, patch products -> wide rows: dualvit_nano's 7x7 stride-2 stem at (64, 32, 32, 3)
# 2.41 / 2.48 -> 1.58 / 1.42 ms, its 3x3 stride-2 16 -> 32 at (64, 16, 16, 16) 0.66 / 0.72 -> 0.47 / 0.48 ms;
# at 96 numbers, (64, 8, 8, 32) 3x3 stride 2 -> 64, dweight 0.51 -> 0.63 ms.
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
    no dilation, padding at most ``k - 1`` (so that ``dx`` of stride 1 is again such a convolution), short
    wide rows; any stride."""
    (kh, kw), (ph, pw) = window.kernel, window.padding
    if (kh, kw) == (1, 1):  # a 1x1 window: the gemm path multiplies x itself, with no copy
        return False
    return (tuple(window.dilation) == (1, 1) and ph <= kh - 1 and pw <= kw - 1
            and kw * in_channels <= MAX_WIDE_ROW)


def takes_weight(in_channels, window):
    """Whether :func:`weight_gradient` gives ``dweight`` of a ``groups == 1`` convolution (the windows of
    :func:`takes`, with wide rows up to ``MAX_WEIGHT_WIDE_ROW``)."""
    (kh, kw), (ph, pw) = window.kernel, window.padding
    return ((kh, kw) != (1, 1) and tuple(window.stride) == (1, 1) and tuple(window.dilation) == (1, 1)
            and ph <= kh - 1 and pw <= kw - 1 and kw * in_channels <= MAX_WEIGHT_WIDE_ROW)


def _wide_shape(x_shape, kernel, window):
    """``(B, s_h, R, W_out, k_w C)``: the wide rows split by the phase of their padded row number modulo the
    stride, ``R`` rows per phase, so that the rows kernel row ``i`` reads for consecutive output rows are
    consecutive (phase ``i mod s_h``, from row ``u + i // s_h``)."""
    batch, height, _, channels = x_shape
    stride_h = window.stride[0]
    out_w = window.output_size(x_shape[1], x_shape[2])[1]
    return (batch, stride_h, -(-(height + 2 * window.padding[0]) // stride_h), out_w, kernel[1] * channels)


@njit(cache=True, parallel=True)
def _fill_wide_rows(x, wide, channels, pad_h, pad_w, stride_w):
    """``wide[b, f, r, v, (j, c)] = x[b, r s_h + f - p_h, v s_w - p_w + j, c]`` (zero outside ``x``) from
    ``x (B, H, W*C)``: one ``prange`` iteration per wide row. A wide pixel whose ``k_w`` taps all fall inside
    the row is one run of ``k_w C`` consecutive numbers of ``x``."""
    batch, height, row_length = x.shape
    width = row_length // channels
    phases, per_phase, out_w, run = wide.shape[1], wide.shape[2], wide.shape[3], wide.shape[4]
    taps = run // channels
    for row in prange(batch * phases * per_phase):
        b = row // (phases * per_phase)
        phase = (row // per_phase) % phases
        h = (row % per_phase) * phases + phase - pad_h
        target = wide[b, phase, row % per_phase]
        if h < 0 or h >= height:
            target[:] = 0.0
            continue
        line = x[b, h]
        for v in range(out_w):
            pixel = target[v]
            left = v * stride_w - pad_w
            if left >= 0 and left + taps <= width:
                pixel[:] = line[left * channels:left * channels + run]
                continue
            for j in range(taps):
                w = left + j
                if 0 <= w < width:
                    for c in range(channels):
                        pixel[j * channels + c] = line[w * channels + c]
                else:
                    for c in range(channels):
                        pixel[j * channels + c] = 0.0


@njit(cache=True)
def _start(block, per_image, rows_per_block, kernel_row, wide_shape, out_h):
    """The image, first output row, pixel count of ``block`` and the first flat wide row ``kernel_row`` reads."""
    phases, per_phase, out_w = wide_shape[1], wide_shape[2], wide_shape[3]
    b = block // per_image
    first = (block % per_image) * rows_per_block
    count = (min(out_h, first + rows_per_block) - first) * out_w
    phase, shift = kernel_row % phases, kernel_row // phases
    return b, first, count, ((b * phases + phase) * per_phase + first + shift) * out_w


@njit(cache=True, parallel=True)
def _row_products(wide, matrices, bias, sums, terms, out, rows_per_block):
    """``out (B, H_out * W_out, C_out)`` block by block: ``rows_per_block`` output rows of one image per
    ``prange`` iteration, the products of the kernel rows added in order in the thread's ``sums``
    (``terms`` holds each further product), then written with ``bias`` added."""
    out_w, run = wide.shape[3], wide.shape[4]
    out_h = out.shape[1] // out_w
    flat = wide.reshape(wide.size // run, run)
    per_image = -(-out_h // rows_per_block)
    for block in prange(out.shape[0] * per_image):
        b, first, count, start = _start(block, per_image, rows_per_block, 0, wide.shape, out_h)
        thread = get_thread_id()
        total, term = sums[thread, :count], terms[thread, :count]
        np.dot(flat[start:start + count], matrices[0], total)
        for i in range(1, matrices.shape[0]):
            shifted = _start(block, per_image, rows_per_block, i, wide.shape, out_h)[3]
            np.dot(flat[shifted:shifted + count], matrices[i], term)
            for n in range(count):
                for k in range(total.shape[1]):
                    total[n, k] += term[n, k]
        target = out[b, first * out_w:first * out_w + count]
        for n in range(count):
            for k in range(total.shape[1]):
                target[n, k] = total[n, k] + bias[k]


def _wide_rows(x, kernel, window):
    wide = scratch("conv2d_rows.wide", _wide_shape(x.shape, kernel, window), x.dtype)
    flat = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    _fill_wide_rows(flat, wide, x.shape[3], window.padding[0], window.padding[1], window.stride[1])
    return wide


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    batch, height, width, channels = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = window.output_size(height, width)
    wide = _wide_rows(x, (kh, kw), window)
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
    :func:`_row_products`' blocks) against the wide rows kernel row ``i`` reads for it;
    ``dout (B, H_out * W_out, C_out)``."""
    out_w, run = wide.shape[3], wide.shape[4]
    out_h = dout.shape[1] // out_w
    flat = wide.reshape(wide.size // run, run)
    per_image = -(-out_h // rows_per_block)
    for block in prange(dout.shape[0] * per_image):
        for i in range(partials.shape[1]):
            b, first, count, start = _start(block, per_image, rows_per_block, i, wide.shape, out_h)
            grads = dout[b, first * out_w:first * out_w + count]
            np.dot(grads.T, flat[start:start + count], partials[block, i])


def weight_gradient(dout, x, weight, window):
    """``dweight`` from the wide rows of ``x``: per block of output rows and kernel row ``i``, one product
    ``dout_r^T R_{r, i}``; the partials are added in block order (the blocks are fixed by the shape)."""
    batch, height, width, channels = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = window.output_size(height, width)
    wide = _wide_rows(x, (kh, kw), window)
    rows_per_block = min(out_h, max(1, BLOCK_PIXELS // out_w))
    blocks = batch * -(-out_h // rows_per_block)
    partials = np.empty((blocks, kh, out_channels, kw * channels), dtype=x.dtype)
    _row_weight_products(wide, np.ascontiguousarray(dout).reshape(batch, out_h * out_w, out_channels), partials,
                         rows_per_block)
    dmatrix = partials.sum(axis=0) if blocks > 1 else partials[0]
    return np.ascontiguousarray(dmatrix.reshape(kh, out_channels, kw, channels).transpose(1, 3, 0, 2))


def backward(dout, x, weight, has_bias, window, channel_sums, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``: ``dx`` of stride 1 by :func:`forward` (or the patch products where this path
    does not take the transposed convolution), of other strides the gemm path's fold; ``dweight`` by
    :func:`weight_gradient`;
    ``needs``: whether ``dx`` and ``dweight`` are wanted (``None`` in their place when not, and not computed)."""
    dx = dweight = None
    if needs[0] and tuple(window.stride) != (1, 1):
        dx = conv2d_gemm._blocked_gradients(dout, x, weight, window, True, with_dweight=False)[0]
    elif needs[0]:
        transposed = conv2d_gemm.transposed_window(window)
        flipped = conv2d_gemm.transposed_weight(weight)
        dx_path = forward if takes(weight.shape[0], transposed) else conv2d_gemm.forward
        dx = dx_path(np.ascontiguousarray(dout), flipped, None, transposed)
    if needs[1]:
        dweight = weight_gradient(dout, x, weight, window)
    return dx, dweight, channel_sums(dout) if has_bias else None
