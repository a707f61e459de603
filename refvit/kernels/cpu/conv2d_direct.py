r"""Grouped 2-D convolution on the CPU as direct loops, for groups too small for a matrix product.

With ``C_g = C_in/G`` input and ``O_g = C_out/G`` output channels per group (the grouped ``1x1``
convolutions of SMT have ``C_g = 4``, ``O_g = 8``), one group's product is a few multiply-adds per
pixel, and a BLAS call per group costs more than the work. The loops follow the definition
(:mod:`refvit.ops.conv2d`), with the weight laid out as ``(G, kh, kw, C_g, O_g)`` so the innermost
loop runs over a group's output channels:

.. math::  y_{b,u,v,g O_g + o} = \beta + \sum_{i,j,c} \tilde x_{b,\,u s_h + i d_h,\,v s_w + j d_w,\,g C_g + c}\,
           w_{g,i,j,c,o}

``dx`` in gather form (input pixel ``(h, w)`` sums over the taps and the outputs that reach it,
:func:`refvit.kernels.cpu._window.reached_output`); ``dweight`` as one partial sum per block of
output rows (fixed blocks, added in block order), so no two iterations write one element.
Sums run in float64 and round once on store.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._window import reached_output
from refvit.kernels.cpu.conv2d_gemm import geometry

# Output rows (b, u) per block of the weight gradient's partial sums.
ROWS_PER_PARTIAL = 8


@njit(cache=True, parallel=True)
def _forward(x, taps, bias, out, geo):
    """``out (B, H_out, W_out, C_out)`` (holding the bias or zeros) += the convolution of ``x``."""
    batch, height, width, _ = x.shape
    groups, group_in, group_out = taps.shape[0], taps.shape[3], taps.shape[4]
    for row in prange(batch * geo.out_h):
        b, u = row // geo.out_h, row % geo.out_h
        sums = np.empty(out.shape[3], dtype=np.float64)
        for v in range(geo.out_w):
            for o in range(out.shape[3]):
                sums[o] = bias[o]
            for i in range(geo.kh):
                h = u * geo.stride_h - geo.pad_h + i * geo.dil_h
                if h < 0 or h >= height:
                    continue
                for j in range(geo.kw):
                    w = v * geo.stride_w - geo.pad_w + j * geo.dil_w
                    if w < 0 or w >= width:
                        continue
                    pixel = x[b, h, w]
                    for g in range(groups):
                        for c in range(group_in):
                            value = np.float64(pixel[g * group_in + c])
                            weights = taps[g, i, j, c]
                            for o in range(group_out):
                                sums[g * group_out + o] += value * weights[o]
            for o in range(out.shape[3]):
                out[b, u, v, o] = sums[o]


@njit(cache=True, parallel=True)
def _input_grad(dout, taps_t, dx, geo):
    """``dx[b, h, w, g C_g + c]``: the sum, over the taps ``(i, j)`` that put input ``(h, w)`` in the
    window of an output ``(u, v)``, of ``dout[b, u, v, g O_g + o] w[g, i, j, c, o]``;
    ``taps_t (G, kh, kw, O_g, C_g)``."""
    batch, height, width, in_channels = dx.shape
    groups, group_out, group_in = taps_t.shape[0], taps_t.shape[3], taps_t.shape[4]
    for row in prange(batch * height):
        b, h = row // height, row % height
        sums = np.empty(in_channels, dtype=np.float64)
        for w in range(width):
            sums[:] = 0.0
            for i in range(geo.kh):
                u = reached_output(h, geo.pad_h, i * geo.dil_h, geo.stride_h, geo.out_h)
                if u < 0:
                    continue
                for j in range(geo.kw):
                    v = reached_output(w, geo.pad_w, j * geo.dil_w, geo.stride_w, geo.out_w)
                    if v < 0:
                        continue
                    grads = dout[b, u, v]
                    for g in range(groups):
                        for o in range(group_out):
                            grad = np.float64(grads[g * group_out + o])
                            weights = taps_t[g, i, j, o]
                            for c in range(group_in):
                                sums[g * group_in + c] += grad * weights[c]
            for c in range(in_channels):
                dx[b, h, w, c] = sums[c]


@njit(cache=True, parallel=True)
def _weight_grad_partials(dout, x, partials, geo):
    """``partials[r] (G, kh, kw, C_g, O_g)``: the weight gradient summed over block ``r`` of output rows."""
    batch, height, width, _ = x.shape
    groups, group_in, group_out = partials.shape[1], partials.shape[4], partials.shape[5]
    rows = batch * geo.out_h
    for block in prange(partials.shape[0]):
        part = partials[block]
        part[...] = 0.0
        for row in range(block * ROWS_PER_PARTIAL, min(rows, (block + 1) * ROWS_PER_PARTIAL)):
            b, u = row // geo.out_h, row % geo.out_h
            for v in range(geo.out_w):
                for i in range(geo.kh):
                    h = u * geo.stride_h - geo.pad_h + i * geo.dil_h
                    if h < 0 or h >= height:
                        continue
                    for j in range(geo.kw):
                        w = v * geo.stride_w - geo.pad_w + j * geo.dil_w
                        if w < 0 or w >= width:
                            continue
                        for g in range(groups):
                            for c in range(group_in):
                                value = np.float64(x[b, h, w, g * group_in + c])
                                sums = part[g, i, j, c]
                                for o in range(group_out):
                                    sums[o] += value * dout[b, u, v, g * group_out + o]


def _taps(weight, groups):
    """``(C_out, C_g, kh, kw)`` -> ``(G, kh, kw, C_g, O_g)``."""
    out_channels, group_in, kh, kw = weight.shape
    grouped = weight.reshape(groups, out_channels // groups, group_in, kh, kw)
    return np.ascontiguousarray(grouped.transpose(0, 3, 4, 2, 1))


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in/G, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    groups = x.shape[3] // weight.shape[1]
    geo = geometry(window, x.shape[1], x.shape[2])
    out = np.empty((x.shape[0], geo.out_h, geo.out_w, weight.shape[0]), dtype=x.dtype)
    bias = np.zeros(weight.shape[0], dtype=x.dtype) if bias is None else bias
    _forward(np.ascontiguousarray(x), _taps(weight, groups), np.ascontiguousarray(bias), out, geo)
    return out


def backward(dout, x, weight, has_bias, window, channel_sums, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``; ``channel_sums(dout)`` gives ``dbias`` when ``has_bias``; ``needs``: whether
    ``dx`` and ``dweight`` are wanted (``None`` in their place when not, and not computed)."""
    out_channels, group_in, kh, kw = weight.shape
    groups = x.shape[3] // group_in
    geo = geometry(window, x.shape[1], x.shape[2])
    x, dout = np.ascontiguousarray(x), np.ascontiguousarray(dout)
    dx = dweight = None
    if needs[0]:
        dx = np.empty_like(x)
        _input_grad(dout, np.ascontiguousarray(_taps(weight, groups).transpose(0, 1, 2, 4, 3)), dx, geo)
    if needs[1]:
        blocks = -(-(x.shape[0] * geo.out_h) // ROWS_PER_PARTIAL)
        partials = np.empty((blocks, groups, kh, kw, group_in, out_channels // groups), dtype=np.float64)
        _weight_grad_partials(dout, x, partials, geo)
        dweight = partials.sum(axis=0).transpose(0, 4, 3, 1, 2).reshape(weight.shape).astype(x.dtype)
    return dx, dweight, channel_sums(dout) if has_bias else None
