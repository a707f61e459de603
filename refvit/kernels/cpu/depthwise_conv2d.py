r"""Depthwise 2-D convolution on the CPU (``groups == C_in == C_out``), channels-last.

One filter per channel:

.. math::  y_{b,u,v,c} = \beta_c + \sum_{i,j} x_{b,\,u s_h - p_h + i d_h,\,v s_w - p_w + j d_w,\,c}\;w_{c,i,j}

(taps that fall in the padding are skipped; the padding is never built).

Layout that makes it fast: a map row ``x[b, h]`` is one contiguous run of ``W*C`` numbers,
and the weight of tap ``(i, j)`` is stored repeated along a row, ``tap_rows[i, j, v*C + c] =
w[c, i, j]``. With ``stride_w == 1`` the contribution of tap ``(i, j)`` to a whole output row is
then a single multiply-add over one contiguous run (``x`` shifted by ``(j d_w - p_w) C``), which
Numba turns into SIMD code; other strides take the same multiply-add one pixel (``C`` numbers)
at a time.

* forward: ``prange`` over output rows ``(b, u)``; each row adds its ``kh*kw`` tap runs.
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
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry
from refvit.kernels.cpu._window import reached_output

# Block sizes of the float64 partial sums of dweight (output map rows) and dbias (pixels).
MAP_ROWS_PER_WEIGHT_BLOCK = 8
PIXELS_PER_BIAS_BLOCK = 512


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


@njit(cache=True, parallel=True)
def _forward(x_rows, tap_rows, out_rows, channels, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """``out_rows (B, H_out, W_out*C) += `` taps of ``x_rows (B, H, W*C)``."""
    batch, height = x_rows.shape[0], x_rows.shape[1]
    width = x_rows.shape[2] // channels
    out_h, out_w = out_rows.shape[1], out_rows.shape[2] // channels
    kh, kw = tap_rows.shape[0], tap_rows.shape[1]
    for row in prange(batch * out_h):
        b = row // out_h
        u = row % out_h
        out_row = out_rows[b, u]
        for i in range(kh):
            h = u * stride_h - pad_h + i * dil_h
            if h < 0 or h >= height:
                continue
            x_row = x_rows[b, h]
            for j in range(kw):
                first, last = _valid_outputs(width, out_w, stride_w, pad_w, j * dil_w)
                tap = tap_rows[i, j]
                if stride_w == 1:
                    lo, hi = first * channels, last * channels
                    shift = (j * dil_w - pad_w) * channels
                    _multiply_add(out_row[lo:hi], x_row[lo + shift:hi + shift], tap[lo:hi])
                    continue
                for v in range(first, last):
                    w = v * stride_w - pad_w + j * dil_w
                    _multiply_add(out_row[v * channels:(v + 1) * channels],
                                  x_row[w * channels:(w + 1) * channels], tap[:channels])


@njit(cache=True, parallel=True)
def _grad_input(dout_rows, tap_rows, dx_rows, channels, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """``dx_rows (B, H, W*C)`` gathers from ``dout_rows (B, H_out, W_out*C)``."""
    batch, height = dx_rows.shape[0], dx_rows.shape[1]
    width = dx_rows.shape[2] // channels
    out_h, out_w = dout_rows.shape[1], dout_rows.shape[2] // channels
    kh, kw = tap_rows.shape[0], tap_rows.shape[1]
    for row in prange(batch * height):
        b = row // height
        h = row % height
        dx_row = dx_rows[b, h]
        for i in range(kh):
            u = reached_output(h, pad_h, i * dil_h, stride_h, out_h)
            if u < 0:
                continue
            dout_row = dout_rows[b, u]
            for j in range(kw):
                # outputs v read this row through tap j at w = v*stride_w - pad_w + j*dil_w
                first, last = _valid_outputs(width, out_w, stride_w, pad_w, j * dil_w)
                tap = tap_rows[i, j]
                if stride_w == 1:
                    lo, hi = first * channels, last * channels
                    shift = (j * dil_w - pad_w) * channels
                    _multiply_add(dx_row[lo + shift:hi + shift], dout_row[lo:hi], tap[lo:hi])
                    continue
                for v in range(first, last):
                    w = v * stride_w - pad_w + j * dil_w
                    _multiply_add(dx_row[w * channels:(w + 1) * channels],
                                  dout_row[v * channels:(v + 1) * channels], tap[:channels])


@njit(cache=True, parallel=True)
def _grad_weight_partials(dout_rows, x_rows, partials, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """``partials[k, i, j, c]``: the dweight sum over the ``k``-th block of output rows (float64)."""
    batch, height = x_rows.shape[0], x_rows.shape[1]
    blocks, kh, kw, channels = partials.shape
    width = x_rows.shape[2] // channels
    out_h, out_w = dout_rows.shape[1], dout_rows.shape[2] // channels
    rows = batch * out_h
    for block in prange(blocks):
        products = np.zeros((kh, kw, out_w * channels), dtype=x_rows.dtype)
        for row in range(block * rows // blocks, (block + 1) * rows // blocks):
            b = row // out_h
            u = row % out_h
            dout_row = dout_rows[b, u]
            for i in range(kh):
                h = u * stride_h - pad_h + i * dil_h
                if h < 0 or h >= height:
                    continue
                x_row = x_rows[b, h]
                for j in range(kw):
                    first, last = _valid_outputs(width, out_w, stride_w, pad_w, j * dil_w)
                    tap_products = products[i, j]
                    if stride_w == 1:
                        lo, hi = first * channels, last * channels
                        shift = (j * dil_w - pad_w) * channels
                        _multiply_add(tap_products[lo:hi], dout_row[lo:hi], x_row[lo + shift:hi + shift])
                        continue
                    for v in range(first, last):
                        w = v * stride_w - pad_w + j * dil_w
                        _multiply_add(tap_products[v * channels:(v + 1) * channels],
                                      dout_row[v * channels:(v + 1) * channels],
                                      x_row[w * channels:(w + 1) * channels])
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
    (stride_h, stride_w), (pad_h, pad_w), (dil_h, dil_w) = window.stride, window.padding, window.dilation
    return stride_h, stride_w, pad_h, pad_w, dil_h, dil_w


def _tap_rows(weight, out_w):
    """``(C, 1, kh, kw)`` -> ``(kh, kw, W_out*C)``: each tap's weights repeated along an output row."""
    taps = weight[:, 0].transpose(1, 2, 0)
    return np.ascontiguousarray(np.tile(taps, (1, 1, out_w)))


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


@kernel_entry
def forward(x, weight, bias, window):
    batch, height, width, channels = x.shape
    out_h, out_w = window.output_size(height, width)
    out = np.zeros((batch, out_h, out_w, channels), dtype=x.dtype)
    if bias is not None:
        out[...] = bias
    _forward(_as_rows(x), _tap_rows(weight, out_w), _as_rows(out), channels, *_window_args(window))
    return out


@kernel_entry
def backward(dout, x, weight, has_bias, window):
    batch, height, width, channels = x.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    dout_rows, x_rows = _as_rows(dout), _as_rows(x)
    dx = np.zeros((batch, height, width, channels), dtype=x.dtype)
    _grad_input(dout_rows, _tap_rows(weight, out_w), _as_rows(dx), channels, *_window_args(window))
    kh, kw = weight.shape[2:]
    partials = np.zeros((_blocks(batch * out_h, MAP_ROWS_PER_WEIGHT_BLOCK), kh, kw, channels), dtype=np.float64)
    _grad_weight_partials(dout_rows, x_rows, partials, *_window_args(window))
    dweight = np.ascontiguousarray(partials.sum(axis=0).transpose(2, 0, 1)).astype(x.dtype)[:, None]
    return dx, dweight, channel_sums(dout) if has_bias else None
