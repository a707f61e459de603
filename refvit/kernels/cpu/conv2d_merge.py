r"""Dense 2-D convolution whose windows do not overlap: stride equal to the kernel, no padding, no dilation
(patch merging, as SMT's ``2x2`` stride-2 stem convolution).

Channels-last, the patch matrix of :mod:`refvit.kernels.cpu.conv2d_gemm` is then a rearrangement of
``x`` (space to depth): row ``n = (b, u, v)``, kernel row ``i`` is the ``kw*C_in`` consecutive numbers
``x[b, u kh + i, v kw : (v + 1) kw, :]``, and every number of ``x`` (inside the ``H_out kh x W_out kw``
corner the windows cover) appears in exactly one place of it. So the fold of ``\partial L/\partial P``
back onto ``dx`` adds nothing: it is the inverse rearrangement, a plain copy. Each block of rows
writes its own part of ``dx`` straight from its product, in cache, with no zeroing of ``dx`` first and
no additions, and, since no two windows share an input number, the blocks need not be whole images
(the gemm path's folding blocks must be, so at (2, 112, 112, 64) it runs 2 blocks where this runs 25).
``dx`` rows and columns past the covered corner (an odd ``H`` under a ``2x2`` merge) take no tap and
are set to zero by the block holding the last window of their row.

The forward is the blocked forward of :mod:`~refvit.kernels.cpu.conv2d_gemm`, whose patch copy is
already one run of ``kw*C_in`` numbers per kernel row for these windows.
"""
import numpy as np
from numba import get_thread_id, njit, prange

from refvit.kernels.cpu import conv2d_gemm
from refvit.kernels.cpu._workspace import scratch
from refvit.kernels.cpu.conv2d_gemm import _bounds, _fill_patches, geometry, split_block_rows, weight_rows


def takes(window):
    """Non-overlapping windows: stride == kernel, no padding, dilation 1 (a ``1x1`` with stride 1 is
    left to the gemm path, which multiplies ``x`` itself)."""
    return (tuple(window.stride) == tuple(window.kernel) and tuple(window.padding) == (0, 0)
            and tuple(window.dilation) == (1, 1) and tuple(window.kernel) != (1, 1))


forward = conv2d_gemm.forward


@njit(cache=True)
def _scatter(dcols, dx, first, stop, geo):
    """Rows ``[first, stop)`` of ``dP`` (in ``dcols[:stop - first]``) copied to where their taps came from in
    ``dx (B, H, W*C)``; the last window of a map row also zeroes that row's uncovered tail, and the
    last window of the last map row the uncovered rows below it."""
    height, run = dx.shape[1], dcols.shape[1] // geo.kh
    row_length = dx.shape[2]
    covered = geo.out_w * run
    for n in range(first, stop):
        v = n % geo.out_w
        u = (n // geo.out_w) % geo.out_h
        b = n // (geo.out_w * geo.out_h)
        source = dcols[n - first]
        for i in range(geo.kh):
            target = dx[b, u * geo.kh + i]
            start = v * run
            for t in range(run):
                target[start + t] = source[i * run + t]
            if v == geo.out_w - 1:
                for t in range(covered, row_length):
                    target[t] = 0.0
        if v == geo.out_w - 1 and u == geo.out_h - 1:
            for h in range(geo.out_h * geo.kh, height):
                dx[b, h, :] = 0.0


@njit(cache=True, parallel=True)
def _backward_blocks(x, dout, matrix_t, cols, dcols, partials, dx, size, geo):
    """Per block ``r``: ``partials[r] = dout_r^T P_r`` and ``dx``'s part ``= dout_r @ matrix_t``, rearranged."""
    rows = dout.shape[0]
    for block in prange(partials.shape[0]):
        first, stop = _bounds(block, rows, size)
        thread = get_thread_id()
        own = cols[thread]
        _fill_patches(x, own, first, stop, geo)
        np.dot(dout[first:stop].T, own[:stop - first], partials[block])
        grads = dcols[thread]
        np.dot(dout[first:stop], matrix_t, grads[:stop - first])
        _scatter(grads, dx, first, stop, geo)


def backward(dout, x, weight, has_bias, window, channel_sums, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``; ``channel_sums(dout)`` gives ``dbias`` when ``has_bias``; ``needs``: whether
    ``dx`` and ``dweight`` are wanted (``None`` in their place when not, and not computed). Without ``dx`` the
    blocked products of :func:`~refvit.kernels.cpu.conv2d_gemm.weight_gradient` (the same blocks, so the same
    ``dweight`` to the bit); without ``dweight`` the gemm path's fold, which for these windows is the same copy."""
    dbias = channel_sums(dout) if has_bias else None
    if not needs[0] or not needs[1]:
        dx, dweight = conv2d_gemm._blocked_gradients(dout, x, weight, window, needs[0], with_dweight=needs[1])
        return dx, dweight, dbias
    batch, height, width, channels = x.shape
    out_channels, _, kh, kw = weight.shape
    geo = geometry(window, height, width)
    rows = batch * geo.out_h * geo.out_w
    size = split_block_rows(rows)
    columns = kh * kw * channels
    dout_rows = np.ascontiguousarray(dout).reshape(rows, out_channels)
    partials = np.empty((-(-rows // size), out_channels, columns), dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype)
    cols = conv2d_gemm._patch_workspace(size, columns, x.dtype)
    dcols = scratch("conv2d.patch_grads", cols.shape, x.dtype)
    flat = np.ascontiguousarray(x).reshape(batch, height, width * channels)
    _backward_blocks(flat, dout_rows, weight_rows(weight), cols, dcols, partials,
                     dx.reshape(batch, height, width * channels), size, geo)
    dmatrix = partials.sum(axis=0) if partials.shape[0] > 1 else partials[0]
    dweight = np.ascontiguousarray(dmatrix.reshape(out_channels, kh, kw, channels).transpose(0, 3, 1, 2))
    return dx, dweight, dbias
