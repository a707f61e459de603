r"""Depthwise 2-D convolution on the CPU (``groups == C_in == C_out``), channels-last.

One filter per channel:

.. math::  y_{b,u,v,c} = \beta_c + \sum_{i,j} x_{b,\,u s_h - p_h + i d_h,\,v s_w - p_w + j d_w,\,c}\;w_{c,i,j}

(taps that fall in the padding are skipped; the padding is never built).

Channels last makes the channel the vector axis: a pixel ``x[b, h, w]`` is a contiguous run
of ``C`` numbers, and so is a tap's weights ``taps[i, j] = w[:, i, j]``.

* forward: ``prange`` over output rows ``(b, u)``; each output pixel starts at the bias and adds
  its ``kh*kw`` taps in ``(i, j)`` order, one multiply-add over the ``C`` channels per tap
  (SIMD code), while the pixel's ``C`` sums stay in the L1 cache. For any stride and dilation. A
  3x3 window inside the map is one expression per channel with the same terms in the same order
  (:func:`_pixel_3x3`): the same bits, without storing the sum after each tap.

For the passes that walk rows, a map row ``x[b, h]`` is one contiguous run of ``W*C`` numbers,
and the weight of tap ``(i, j)`` is stored repeated along a row, ``tap_rows[i, j, v*C + c] =
w[c, i, j]``. With ``stride_w == 1`` the contribution of tap ``(i, j)`` to a whole row is then a
single multiply-add over one contiguous run (``x`` shifted by ``(j d_w - p_w) C``); other
strides take the same multiply-add one pixel (``C`` numbers) at a time.

* dx (gather): ``prange`` over input rows ``(b, h)``; row ``h`` collects
  :math:`\delta_{b,u,v,c}\,w_{c,i,j}` from the output rows :math:`u = (h + p_h - i d_h)/s_h`
  (whole numbers in ``[0, H_out)``) that read it, tap by tap.
* dweight: ``prange`` over blocks of output rows; each block keeps its own products
  :math:`\delta_{b,u,v,c}\,x_{b,h,w,c}` per tap and output column, then sums them over ``v``
  into its float64 partial ``(kh, kw, C)``; the partials are added at the end. No two
  iterations write the same element.
* dbias: per-block float64 channel sums, added at the end.

Forward and dx accumulate in the input dtype (at most ``kh*kw`` terms per element); dweight
and dbias finish their long sums in float64.

The forward's pixel loop replaced a row walk (the dx pass's, with the output as the row written):
``python examples/conv2d_shapes.py --repeat 9 --filter depthwise`` (2 threads, float32, wall time,
least of 9, range over 3 alternating runs) gave 0.332-0.341 -> 0.283-0.285 ms at dualvit_nano's
(64, 8, 8, 128), 0.452-0.791 -> 0.221-0.284 ms at coatnet_nano's (64, 16, 16, 128) stride 2 and
0.198-0.219 -> 0.116-0.130 ms at its (64, 8, 8, 256) stride 2, where the walk took one run per
pixel, with the same results to the bit (table in docs/ops/conv2d.md).
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._window import reached_output

# Block sizes of the float64 partial sums of dweight (output map rows) and dbias (pixels).
MAP_ROWS_PER_WEIGHT_BLOCK = 8
PIXELS_PER_BIAS_BLOCK = 512
# A 3x3 window inside the map is one expression per channel (:func:`_pixel_3x3`) while a pixel's ``C``
# numbers take fewer bytes than this. At 1024 float32 channels its 18 runs lie 4 KB apart, share the
# same L1 cache sets, and the expression ran 2-3x slower than the tap loop (scratch timing, one thread,
# (2, 14, 14, 1024): 0.89 against 0.29 ms); at 1280 channels it was 0.37 against 0.42 ms.
MAX_3X3_PIXEL_BYTES = 4096


@njit(cache=True)
def _valid_outputs(length, out_length, stride, pad, offset):
    """Output positions ``o`` whose tap at ``offset`` reads inside: ``0 <= o*stride - pad + offset < length``."""
    first = max(0, -((offset - pad) // stride))
    last = min(out_length, (length - 1 + pad - offset) // stride + 1)
    return first, max(first, last)


@njit(cache=True)
def _multiply_add(target, a, b):
    """``target += a * b`` elementwise over equal-length 1-D runs."""
    for t in range(target.shape[0]):
        target[t] += a[t] * b[t]


# What a tap walk writes: the input row (dx) or the per-tap products (dweight).
WRITES_INPUT, WRITES_TAPS = 1, 2


@njit(cache=True, parallel=True)
def _forward_pixels(x, taps, bias, out, stride, pad, dilation):
    """``out[b, u, v] = bias + sum over taps (i, j) inside of x[b, h, w] * taps[i, j]`` with
    ``h = u s_h - p_h + i d_h`` and ``w = v s_w - p_w + j d_w``, the taps added in ``(i, j)`` order;
    ``x (B, H, W, C)``, ``taps (kh, kw, C)``, ``bias (C,)`` (zeros when there is none), ``out (B, H_out, W_out, C)``."""
    batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    three = (taps.shape[0] == 3 and taps.shape[1] == 3 and dilation[0] == 1 and dilation[1] == 1
             and channels * x.itemsize < MAX_3X3_PIXEL_BYTES)
    for row in prange(batch * out_h):
        b, u = row // out_h, row % out_h
        top = u * stride[0] - pad[0]
        for v in range(out_w):
            pixel = out[b, u, v]
            left = v * stride[1] - pad[1]
            if three and 0 <= top and top + 2 < height and 0 <= left and left + 2 < width:
                _pixel_3x3(x[b, top], x[b, top + 1], x[b, top + 2], left, taps, bias, pixel)
                continue
            for c in range(channels):
                pixel[c] = bias[c]
            for i in range(taps.shape[0]):
                h = top + i * dilation[0]
                if h < 0 or h >= height:
                    continue
                for j in range(taps.shape[1]):
                    w = left + j * dilation[1]
                    if w < 0 or w >= width:
                        continue
                    source, tap = x[b, h, w], taps[i, j]
                    for c in range(channels):
                        pixel[c] += source[c] * tap[c]


@njit(cache=True)
def _pixel_3x3(row0, row1, row2, left, taps, bias, pixel):
    """An output pixel of a 3x3 window that lies inside the map: ``pixel = bias + sum of the nine taps``,
    added in ``(i, j)`` order, as one expression per channel (the sum stays in a register; the general loop
    adds into ``pixel`` in memory once per tap). ``row0..row2`` are the input rows ``(W, C)`` of the window,
    ``left`` its first column."""
    for c in range(pixel.shape[0]):
        pixel[c] = (bias[c]
                    + row0[left, c] * taps[0, 0, c] + row0[left + 1, c] * taps[0, 1, c]
                    + row0[left + 2, c] * taps[0, 2, c]
                    + row1[left, c] * taps[1, 0, c] + row1[left + 1, c] * taps[1, 1, c]
                    + row1[left + 2, c] * taps[1, 2, c]
                    + row2[left, c] * taps[2, 0, c] + row2[left + 1, c] * taps[2, 1, c]
                    + row2[left + 2, c] * taps[2, 2, c])


@njit(cache=True)
def _walk_taps(writes, out_rows, in_rows, taps, row, channels, stride, pad, dilation):
    """One map row's share of a pass. Every tap ``(i, j)`` joins output row ``u`` to input row
    ``h = u s_h - p_h + i d_h`` and output pixel ``v`` to input pixel ``w = v s_w - p_w + j d_w``;
    for the taps of ``row`` (``u``, or ``h`` when the walk writes the input) that land inside,
    ``writes`` names the run of ``C`` numbers that takes the product of the other two:

    * ``WRITES_INPUT``: ``in[h, w] += out[u, v] * taps[i, j, v]`` (dx; ``out`` is ``dout``),
    * ``WRITES_TAPS``: ``taps[i, j, v] += out[u, v] * in[h, w]`` (the dweight products of ``dout`` and ``x``).

    ``out_rows (H_out, W_out*C)`` and ``in_rows (H, W*C)`` are one image; ``stride``, ``pad`` and
    ``dilation`` are ``(along H, along W)``. With ``stride_w == 1`` a tap's pixels make one
    contiguous run (one SIMD multiply-add); otherwise every pixel is its own run of ``C``.
    """
    out_h, out_w = out_rows.shape[0], out_rows.shape[1] // channels
    height, width = in_rows.shape[0], in_rows.shape[1] // channels
    for i in range(taps.shape[0]):
        if writes == WRITES_INPUT:
            h = row
            u = reached_output(h, pad[0], i * dilation[0], stride[0], out_h)
        else:
            u = row
            h = u * stride[0] - pad[0] + i * dilation[0]
        if u < 0 or h < 0 or h >= height:
            continue
        out_row, in_row = out_rows[u], in_rows[h]
        for j in range(taps.shape[1]):
            offset = j * dilation[1]
            first, last = _valid_outputs(width, out_w, stride[1], pad[1], offset)
            runs, length = (1, (last - first) * channels) if stride[1] == 1 else (last - first, channels)
            tap = taps[i, j]
            for v in range(first, first + runs):
                o = v * channels
                n = (v * stride[1] - pad[1] + offset) * channels
                if writes == WRITES_INPUT:
                    _multiply_add(in_row[n:n + length], out_row[o:o + length], tap[o:o + length])
                else:
                    _multiply_add(tap[o:o + length], out_row[o:o + length], in_row[n:n + length])


@njit(cache=True, parallel=True)
def _grad_input(dout_rows, tap_rows, dx_rows, channels, stride, pad, dilation):
    """``dx_rows (B, H, W*C)`` gathers from ``dout_rows (B, H_out, W_out*C)``: :func:`_walk_taps` with
    ``prange`` over the input rows, each written by its own iteration."""
    rows = dx_rows.shape[1]
    for row in prange(dout_rows.shape[0] * rows):
        b = row // rows
        _walk_taps(WRITES_INPUT, dout_rows[b], dx_rows[b], tap_rows, row % rows, channels, stride, pad, dilation)


@njit(cache=True, parallel=True)
def _grad_weight_partials(dout_rows, x_rows, partials, stride, pad, dilation):
    """``partials[k, i, j, c]``: the dweight sum over the ``k``-th block of output rows (float64)."""
    blocks, kh, kw, channels = partials.shape
    out_h, out_w = dout_rows.shape[1], dout_rows.shape[2] // channels
    rows = dout_rows.shape[0] * out_h
    for block in prange(blocks):
        products = np.zeros((kh, kw, out_w * channels), dtype=x_rows.dtype)
        for row in range(block * rows // blocks, (block + 1) * rows // blocks):
            b = row // out_h
            _walk_taps(WRITES_TAPS, dout_rows[b], x_rows[b], products, row % out_h, channels, stride, pad, dilation)
        partial = partials[block]
        for i in range(kh):
            for j in range(kw):
                for v in range(out_w):
                    for c in range(channels):
                        partial[i, j, c] += products[i, j, v * channels + c]


@njit(cache=True, parallel=True)
def _channel_sums(dout_rows, partial):
    """``partial[k, c]`` = sum of ``dout_rows[n, c]`` over the ``k``-th block of rows (float64)."""
    rows, channels = dout_rows.shape
    blocks = partial.shape[0]
    for block in prange(blocks):
        for n in range(block * rows // blocks, (block + 1) * rows // blocks):
            for c in range(channels):
                partial[block, c] += dout_rows[n, c]


def _window_args(window):
    """The kernels' geometry arguments: ``stride``, ``pad``, ``dilation``, each ``(along H, along W)``."""
    return tuple(window.stride), tuple(window.padding), tuple(window.dilation)


def _taps(weight):
    """``(C, 1, kh, kw)`` -> contiguous ``(kh, kw, C)``: each tap's weights, one per channel."""
    return np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))


def _tap_rows(weight, out_w):
    """``(C, 1, kh, kw)`` -> ``(kh, kw, W_out*C)``: each tap's weights repeated along an output row."""
    return np.ascontiguousarray(np.tile(_taps(weight), (1, 1, out_w)))


def _as_rows(a):
    """``(B, H, W, C)`` -> contiguous ``(B, H, W*C)``."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], a.shape[2] * a.shape[3])


def _blocks(rows, rows_per_block):
    """How many blocks a sum over ``rows`` is split into: fixed by the shape alone, so the rounding
    of dweight and dbias does not depend on the number of threads."""
    return max(1, -(-rows // rows_per_block))


def channel_sums(dout):
    """``dout (..., C)`` summed over every axis but the last (the bias gradient)."""
    rows = np.ascontiguousarray(dout).reshape(-1, dout.shape[-1])
    partial = np.zeros((_blocks(rows.shape[0], PIXELS_PER_BIAS_BLOCK), rows.shape[1]), dtype=np.float64)
    _channel_sums(rows, partial)
    return partial.sum(axis=0).astype(rows.dtype)


def weight_gradient(dout_rows, x_rows, kernel, channels, geometry):
    """The weight gradient as ``(kh, kw, C)`` in the input dtype: ``dout_rows (B, H_out, W_out*C)``,
    ``x_rows (B, H, W*C)``, ``kernel (kh, kw)``, ``geometry`` the ``(stride, pad, dilation)`` pairs.
    Per-block partials in float64, added in block order."""
    batch, out_h = dout_rows.shape[:2]
    kh, kw = kernel
    partials = np.zeros((_blocks(batch * out_h, MAP_ROWS_PER_WEIGHT_BLOCK), kh, kw, channels), dtype=np.float64)
    _grad_weight_partials(dout_rows, x_rows, partials, *geometry)
    return partials.sum(axis=0).astype(x_rows.dtype)


def forward(x, weight, bias, window):
    batch, height, width, channels = x.shape
    out_h, out_w = window.output_size(height, width)
    out = np.empty((batch, out_h, out_w, channels), dtype=x.dtype)
    start = np.zeros(channels, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias)
    _forward_pixels(np.ascontiguousarray(x), _taps(weight), start, out, *_window_args(window))
    return out


def backward(dout, x, weight, has_bias, window, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``; ``needs``: whether ``dx`` and ``dweight`` are wanted (``None`` in their
    place when not, and not computed)."""
    batch, height, width, channels = x.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    dout_rows, x_rows = _as_rows(dout), _as_rows(x)
    dx = dweight = None
    if needs[0]:
        dx = np.zeros((batch, height, width, channels), dtype=x.dtype)
        _grad_input(dout_rows, _tap_rows(weight, out_w), _as_rows(dx), channels, *_window_args(window))
    if needs[1]:
        taps = weight_gradient(dout_rows, x_rows, weight.shape[2:], channels, _window_args(window))
        dweight = np.ascontiguousarray(taps.transpose(2, 0, 1))[:, None]
    return dx, dweight, channel_sums(dout) if has_bias else None
