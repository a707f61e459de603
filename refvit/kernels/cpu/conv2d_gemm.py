r"""Dense 2-D convolution (``groups == 1``) on the CPU as matrix products over blocks of output pixels.

The patch matrix holds, for output pixel ``n = (b, u, v)`` and column ``k = (i, j, c)``:

.. math::  P_{n,k} = \tilde x_{b,\,u s_h - p_h + i d_h,\,v s_w - p_w + j d_w,\,c}

(zero where the tap falls in the padding). With the weight as ``M (kh*kw*C_in, C_out)``:

.. math::  Y = P M, \qquad \frac{\partial L}{\partial M^\top} = \Delta^\top P, \qquad
           \frac{\partial L}{\partial P} = \Delta M^\top

The ``N = B*H_out*W_out`` rows are cut into fixed blocks (:func:`split_block_rows`, set by the sizes
only, never by the thread count). One ``prange`` iteration per block copies the block's patch rows
into a reused workspace and multiplies them at once, while they are still in cache, with Numba's
``np.dot`` (single-threaded BLAS, see :mod:`refvit.kernels.cpu._threads`): the forward writes
``Y`` rows, the backward one partial ``\Delta_r^\top P_r`` per block (added in block order
afterwards) and the ``\partial L/\partial P`` rows, which the same iteration folds back onto
``dx``: every entry ``(n, k)`` is added to the input number it was copied from. For that the blocks
of a folding backward are whole images (:func:`image_block_rows`), so no two iterations write one
image, and the block's ``\partial L/\partial P`` is still in cache when it is folded.

Channels-last makes a patch row a few contiguous runs: with ``d_w = 1`` the ``kw`` taps of one
kernel row are ``kw*C_in`` consecutive numbers of ``x``, copied as one run (a stem's ``C_in = 3``
would otherwise copy runs of 3). A ``1x1`` convolution with stride 1 and no padding has ``P = x``
and skips the copy and the fold.
"""
from typing import NamedTuple

import numpy as np
from numba import config, get_thread_id, njit, prange

from refvit.kernels.cpu._workspace import scratch

# Rows of the patch matrix per block: at least MIN_BLOCK_ROWS (a block's patch rows, a few hundred
# KiB, stay in L2 between the copy and the product), and at most MAX_BLOCKS blocks (each block of
# the backward keeps a (kh*kw*C_in, C_out) partial weight gradient).
MIN_BLOCK_ROWS = 256
MAX_BLOCKS = 32
# A patch matrix of fewer than 2 * MIN_BLOCK_ROWS rows is split into two blocks, from this many rows per
# block up (:func:`split_block_rows`): dualvit_nano's stride-2 3x3 64 -> 96 at (64, 4, 4, 64), 256 rows,
# forward on 2 threads 0.37 ms in one block, 0.20 ms in two (the least of 15 calls), backward 0.82 ms on
# one core; at 1024 rows or more the block size made no difference (64 to 1024 rows per block within 10%).
MIN_HALF_ROWS = 32


class Geometry(NamedTuple):
    """The window of one call, in the integers the kernels use."""
    out_h: int
    out_w: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dil_h: int
    dil_w: int


def geometry(window, height, width):
    out_h, out_w = window.output_size(height, width)
    (kh, kw), (stride_h, stride_w) = window.kernel, window.stride
    (pad_h, pad_w), (dil_h, dil_w) = window.padding, window.dilation
    return Geometry(out_h, out_w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)


def block_rows(rows):
    """Rows per block for a patch matrix of ``rows`` rows."""
    return max(MIN_BLOCK_ROWS, -(-rows // MAX_BLOCKS))


def split_block_rows(rows):
    """Rows per block of the forward and backward: :func:`block_rows`, but at most half the rows (from
    ``2 * MIN_HALF_ROWS`` rows up), so that a small map still gives both cores a block. Set by ``rows``
    alone: a row's result may depend on the size of the product it falls in."""
    if rows < 2 * MIN_HALF_ROWS:
        return block_rows(rows)
    return min(block_rows(rows), -(-rows // 2))


def image_block_rows(rows, pixels_per_image):
    """Rows per block of a backward that folds its patch gradients back: whole images, at least
    :func:`split_block_rows` rows, so each block folds into images no other block touches."""
    return -(-split_block_rows(rows) // pixels_per_image) * pixels_per_image


def is_pointwise(geo):
    """A ``1x1`` window with stride 1 and no padding: the patch matrix is ``x`` itself."""
    return (geo.kh, geo.kw, geo.stride_h, geo.stride_w, geo.pad_h, geo.pad_w) == (1, 1, 1, 1, 0, 0)


@njit(cache=True)
def _fill_patches(x, cols, first, stop, geo):
    """Rows ``[first, stop)`` of the patch matrix into ``cols[:stop - first]``; ``x (B, H, W*C)``."""
    height, channels = x.shape[1], cols.shape[1] // (geo.kh * geo.kw)
    width = x.shape[2] // channels
    run = geo.kw * channels
    for n in range(first, stop):
        v = n % geo.out_w
        u = (n // geo.out_w) % geo.out_h
        b = n // (geo.out_w * geo.out_h)
        target = cols[n - first]
        left = v * geo.stride_w - geo.pad_w
        for i in range(geo.kh):
            h = u * geo.stride_h - geo.pad_h + i * geo.dil_h
            row = i * run
            if h < 0 or h >= height:
                for t in range(run):
                    target[row + t] = 0.0
                continue
            pixels = x[b, h]
            if geo.dil_w == 1 and left >= 0 and left + geo.kw <= width:
                start = left * channels
                for t in range(run):
                    target[row + t] = pixels[start + t]
                continue
            for j in range(geo.kw):
                w = left + j * geo.dil_w
                column = row + j * channels
                if 0 <= w < width:
                    for c in range(channels):
                        target[column + c] = pixels[w * channels + c]
                else:
                    for c in range(channels):
                        target[column + c] = 0.0


@njit(cache=True)
def _bounds(block, rows, size):
    return block * size, min(rows, (block + 1) * size)


@njit(cache=True, parallel=True)
def _forward_blocks(x, matrix, bias, has_bias, cols, out, size, geo, pointwise):
    """``out (N, C_out) = P @ matrix (+ bias)`` block by block, the bias added to a block's rows while they
    are in cache; ``x (B, H, W*C_in)``, ``cols (threads, size, K)`` one block's patch rows per thread."""
    rows = out.shape[0]
    flat = x.reshape(rows if pointwise else 1, x.size // (rows if pointwise else 1))
    for block in prange(-(-rows // size)):
        first, stop = _bounds(np.int64(block), rows, size)
        if pointwise:
            np.dot(flat[first:stop], matrix, out[first:stop])
        else:
            own = cols[get_thread_id()]
            _fill_patches(x, own, first, stop, geo)
            np.dot(own[:stop - first], matrix, out[first:stop])
        if has_bias:
            for n in range(first, stop):
                for o in range(out.shape[1]):
                    out[n, o] += bias[o]


@njit(cache=True, parallel=True)
def _backward_blocks(x, dout, matrix_t, cols, dcols, partials, dx, size, geo, pointwise):
    """Per block ``r``: unless ``partials`` has no columns, ``partials[r] = dout_r^T P_r``; unless ``dx`` is
    empty, ``dout_r @ matrix_t`` into the thread's ``dcols`` and folded into ``dx (B, H, W*C)`` (the blocks
    are whole images), or written to ``dx`` as it is for a pointwise window."""
    rows = dout.shape[0]
    flat = x.reshape(rows if pointwise else 1, x.size // (rows if pointwise else 1))
    with_dweight = partials.shape[2] > 0
    for block in prange(partials.shape[0]):
        first, stop = _bounds(np.int64(block), rows, size)
        if pointwise:
            if with_dweight:
                np.dot(dout[first:stop].T, flat[first:stop], partials[block])
            if dx.shape[0] > 0:
                grads = dx.reshape(rows, flat.shape[1])
                np.dot(dout[first:stop], matrix_t, grads[first:stop])
            continue
        thread = get_thread_id()
        if with_dweight:
            own = cols[thread]
            _fill_patches(x, own, first, stop, geo)
            np.dot(dout[first:stop].T, own[:stop - first], partials[block])
        if dx.shape[0] > 0:
            grads = dcols[thread]
            np.dot(dout[first:stop], matrix_t, grads[:stop - first])
            _fold(grads, dx, first, stop, geo)


@njit(cache=True)
def _fold(dcols, dx, first, stop, geo):
    """col2im of rows ``[first, stop)`` (whole images, in ``dcols[:stop - first]``): each image of
    ``dx (B, H, W*C)`` set to the sum of every patch entry copied from it.

    The rows are added back in order, in the same contiguous runs :func:`_fill_patches` copies (the
    gather form, a loop per input pixel over the taps that reach it, ran 4x slower on a stem with
    ``C_in = 3``), right after the block's product, while it is in cache."""
    height = dx.shape[1]
    channels = dcols.shape[1] // (geo.kh * geo.kw)
    width = dx.shape[2] // channels
    run = geo.kw * channels
    pixels_per_image = geo.out_h * geo.out_w
    for b in range(first // pixels_per_image, stop // pixels_per_image):
        dx[b] = 0.0
    for n in range(first, stop):
        image = dx[n // pixels_per_image]
        v = n % geo.out_w
        u = (n // geo.out_w) % geo.out_h
        source = dcols[n - first]
        left = v * geo.stride_w - geo.pad_w
        for i in range(geo.kh):
            h = u * geo.stride_h - geo.pad_h + i * geo.dil_h
            if h < 0 or h >= height:
                continue
            pixels = image[h]
            row = i * run
            if geo.dil_w == 1 and left >= 0 and left + geo.kw <= width:
                start = left * channels
                for t in range(run):
                    pixels[start + t] += source[row + t]
                continue
            for j in range(geo.kw):
                w = left + j * geo.dil_w
                if 0 <= w < width:
                    column = row + j * channels
                    for c in range(channels):
                        pixels[w * channels + c] += source[column + c]


def _patch_workspace(size, columns, dtype):
    """One block of patch rows per Numba thread (``prange`` iterations index it by thread id)."""
    return scratch("conv2d.patches", (config.NUMBA_NUM_THREADS, size, columns), dtype)


def weight_rows(weight):
    """``(C_out, C_in, kh, kw)`` -> ``M^T (C_out, kh*kw*C_in)``, columns ordered ``(i, j, c)``: one
    copy, whose transpose the forward hands to BLAS as it is (a copy into ``M`` was 0.3 ms of the
    1 ms forward at (64, 2, 2, 128) 3x3 -> 256)."""
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(weight.shape[0], -1)


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    batch, height, width, channels = x.shape
    geo = geometry(window, height, width)
    rows = batch * geo.out_h * geo.out_w
    matrix_t = weight_rows(weight)
    pointwise = is_pointwise(geo)
    size = split_block_rows(rows)
    cols = _patch_workspace(1 if pointwise else size, 1 if pointwise else matrix_t.shape[1], x.dtype)
    out = np.empty((rows, weight.shape[0]), dtype=x.dtype)
    flat = np.ascontiguousarray(x).reshape(batch, height, width * channels)
    # one signature with and without a bias: an empty stand-in and a flag instead of None
    start = np.empty(0, x.dtype) if bias is None else np.ascontiguousarray(bias)
    _forward_blocks(flat, matrix_t.T, start, bias is not None, cols, out, size, geo, pointwise)
    return out.reshape(batch, geo.out_h, geo.out_w, weight.shape[0])


def transposed_window(window):
    """For a stride-1 window whose padding is at most ``d*(k-1)``: the window under which ``dx`` is the
    forward convolution of ``dout`` with the flipped, transposed weight; else None.

    Input ``h`` takes tap ``i`` from output ``h + p - i d``; with ``i' = k-1-i`` that is
    ``h - p' + i' d`` for ``p' = d(k-1) - p``: a stride-1 window with padding ``p'`` over ``dout``."""
    if window.stride != (1, 1):
        return None
    padding = tuple(d * (k - 1) - p for k, p, d in zip(window.kernel, window.padding, window.dilation))
    if min(padding) < 0:
        return None
    return type(window)(window.kernel, (1, 1), padding, window.dilation)


def backward(dout, x, weight, has_bias, window, channel_sums, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``; ``channel_sums(dout)`` gives ``dbias`` when ``has_bias``; ``needs``: whether
    ``dx`` and ``dweight`` are wanted (``None`` in their place when not, and not computed).

    ``dx`` of a stride-1 window is the forward on ``dout`` (:func:`transposed_window`), in cache
    block by block (at (2, 112, 112, 64) 3x3 -> 64, one thread: backward 65 -> 50 ms against a fold);
    other windows fold each block's patch gradients back right after its product, in cache (one thread,
    CPU time, forward + backward, against a separate fold pass per image afterwards, the range over 3
    alternating runs of the minimum of 7 calls of ``examples/conv2d_shapes.py --cpu-time --repeat 7``:
    the 7x7 stride-2 stem at (64, 32, 32, 3) 11.8-12.1 -> 9.2-10.1 ms, 3x3 stride 2 at (2, 56, 56, 64)
    8.87-9.23 -> 8.14-8.50 ms, at (2, 14, 14, 256) 11.8-14.4 -> 10.3-11.1 ms). Without ``dx`` the blocks
    of a folding window keep their size (whole images), so ``dweight`` is the same to the bit."""
    want_dx, want_dweight = needs
    transposed = None if is_pointwise(geometry(window, *x.shape[1:3])) else transposed_window(window)
    dx = dweight = None
    if want_dweight or (want_dx and transposed is None):
        dx, dweight = _blocked_gradients(dout, x, weight, window, want_dx and transposed is None,
                                         fold_sized=transposed is None, with_dweight=want_dweight)
    if want_dx and transposed:
        dx = forward(dout, transposed_weight(weight), None, transposed)
    return dx, dweight, channel_sums(dout) if has_bias else None


def transposed_weight(weight):
    """The weight of :func:`transposed_window`'s convolution: ``(C_in, C_out, kh, kw)``, flipped in both axes."""
    return np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def weight_gradient(dout, x, weight, window):
    """``dweight`` alone: the blocked products of :func:`backward` without ``dx``."""
    return _blocked_gradients(dout, x, weight, window, False)[1]


def _blocked_gradients(dout, x, weight, window, with_dx, fold_sized=False, with_dweight=True):
    """``(dx, dweight)`` from the blocks of :func:`_backward_blocks`; ``dx`` None unless ``with_dx``
    (a pointwise window writes it directly, other windows fold each block's patch gradients back), ``dweight``
    None unless ``with_dweight``. The blocks are whole images when ``dx`` is folded or ``fold_sized``."""
    batch, height, width, channels = x.shape
    out_channels, _, kh, kw = weight.shape
    geo = geometry(window, height, width)
    rows = batch * geo.out_h * geo.out_w
    matrix_t = weight_rows(weight)
    pointwise = is_pointwise(geo)
    folds = with_dx and not pointwise
    whole_images = (with_dx or fold_sized) and not pointwise
    size = image_block_rows(rows, geo.out_h * geo.out_w) if whole_images else split_block_rows(rows)
    columns = kh * kw * channels
    dout_rows = np.ascontiguousarray(dout).reshape(rows, out_channels)
    partials = np.empty((-(-rows // size), out_channels, columns if with_dweight else 0), dtype=x.dtype)
    dx = np.empty(x.shape if with_dx else (0, 1, 1, 1), dtype=x.dtype)
    patches = with_dweight and not pointwise
    cols = _patch_workspace(size if patches else 1, columns if patches else 1, x.dtype)
    dcols = scratch("conv2d.patch_grads", (cols.shape[0], size, columns) if folds else (1, 1, 1), x.dtype)
    flat = np.ascontiguousarray(x).reshape(batch, height, width * channels)
    _backward_blocks(flat, dout_rows, matrix_t, cols, dcols, partials,
                     dx.reshape(dx.shape[0], dx.shape[1], dx.shape[2] * dx.shape[3]), size, geo, pointwise)
    if not with_dweight:
        return (dx if with_dx else None), None
    dmatrix = partials.sum(axis=0) if partials.shape[0] > 1 else partials[0]
    dweight = np.ascontiguousarray(dmatrix.reshape(out_channels, kh, kw, channels).transpose(0, 3, 1, 2))
    return (dx if with_dx else None), dweight
