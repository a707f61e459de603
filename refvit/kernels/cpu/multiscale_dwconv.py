"""Multi-head mixed depthwise convolution on the CPU: every head's kernel size in one pass.

The per-head kernels ``weights[i] (C_h, 1, 3+2i, 3+2i)`` are packed, centred, into one
channels-last array ``packed (K, K, C)`` with ``K = 2 * heads + 1`` (the largest kernel); the
taps outside a head's own radius stay zero. Head ``i`` has radius ``1 + i``, so the channels whose
kernel holds tap ``(u, v)`` are those of heads ``max(|u|, |v|) - 1`` and up: one contiguous range
ending at ``C``.

* forward: ``prange`` over output rows ``(b, y)``, accumulated in the input dtype, tap by tap (at
  most ``K*K`` terms per element, as :mod:`depthwise_conv2d` does), one head at a time. The input is
  first laid out by head (:func:`_head_rows`: ``(heads, B, H, W*C_h)``), so that a head's channels of
  a map row are one contiguous run, and each head's weights are repeated along such a run
  (:func:`_head_taps`). Every tap of a head's own kernel is then one multiply-add over the whole run
  (shifted by the tap's column), which Numba turns into SIMD code, into a scratch run that starts at
  the bias and is written into the head's channels of the output row at the end. A head's taps are
  visited in the same order as in the packed ``K x K`` array, so the sums are those of a tap loop
  over it. Taps outside a head's kernel are never visited, so a NaN reaches only the pixels its own
  head's kernel covers.
* dx: the same correlation on ``dout`` with the packed kernels flipped (a gather, no scatter).
* dweights: the depthwise kernel's per-block products over the packed ``K x K`` window
  (:func:`refvit.kernels.cpu.depthwise_conv2d.weight_gradient`), finished in float64; the taps
  outside each head's kernel are computed there too and dropped by :func:`unpack_weights`.
* dbiases: channel sums of ``dout`` in float64.

Measured with ``python examples/conv2d_shapes.py --cpu-time --repeat 9 --filter multiscale`` (one thread,
CPU time, three runs alternating with the previous kernel; every shape in ``docs/ops/multiscale_dwconv.md``):
the head rows took the forward of SMT-T's first stage, (2, 56, 56, 64), from 7.3-7.5 to 2.1-2.2 ms and
that of smt_nano's first, (64, 8, 8, 32), from 2.4-2.5 to 1.4-1.6. The previous kernel walked the
packed taps over pixel-major rows: one run of the tap's channel range per pixel for every tap outside
the 3x3 centre. Where a head has more taps than the map has columns (smt_nano's 4x4 and 2x2 stages),
the head rows make more, shorter runs, and those forwards take 0.06-0.19 ms more.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.depthwise_conv2d import _as_rows, weight_gradient


def packed_size(heads):
    """Side of the packed kernel array: the largest head kernel, ``3 + 2 * (heads - 1)``."""
    return 2 * heads + 1


@njit(cache=True)
def _multiply_add(target, a, b):
    """``target += a * b`` elementwise over equal-length 1-D runs."""
    for t in range(target.shape[0]):
        target[t] += a[t] * b[t]


@njit(cache=True, parallel=True)
def _correlate_heads(x_heads, head_taps, bias, out_rows):
    """out[b,y,q,c] = bias[c] + sum_{|u|,|v| <= r(c)} packed[R+u, R+v, c] * x[b, y+u, q+v, c], r(c) = 1 + c // C_h.

    ``x_heads (heads, B, H, W*C_h)``: each head's channels of a map row as one run; ``head_taps (heads,
    K, K, W*C_h)`` the packed weights of each head repeated along such a run; ``bias (C,)``;
    ``out_rows (B, H, W*C)``. One output row ``(b, y)`` per iteration, all heads in it (so every
    iteration has the same work); per head, a scratch run starts at the bias, each tap of the head's
    own kernel adds one shifted run of the source row, and the run is written into the head's channels.
    """
    heads, batch, height, run = x_heads.shape
    channels = bias.shape[0]
    per_head = channels // heads
    width = run // per_head
    centre = head_taps.shape[1] // 2
    for row in prange(batch * height):
        b = row // height
        y = row % height
        target = np.empty(run, dtype=out_rows.dtype)
        for head in range(heads):
            radius = 1 + head
            first = head * per_head
            for q in range(width):
                for c in range(per_head):
                    target[q * per_head + c] = bias[first + c]
            for u in range(max(-radius, -y), min(radius, height - 1 - y) + 1):
                source = x_heads[head, b, y + u]
                for v in range(max(-radius, 1 - width), min(radius, width - 1) + 1):
                    taps = head_taps[head, centre + u, centre + v]
                    start, stop = max(0, -v), min(width, width - v)
                    _multiply_add(target[start * per_head:stop * per_head],
                                  source[(start + v) * per_head:(stop + v) * per_head],
                                  taps[start * per_head:stop * per_head])
            for q in range(width):
                for c in range(per_head):
                    out_rows[b, y, q * channels + first + c] = target[q * per_head + c]


@njit(cache=True)
def _channel_sums(dout, dbias):
    """dbias[c] = sum_{b,y,q} dout[b,y,q,c], accumulated in float64."""
    batch, height, width, channels = dout.shape
    acc = np.zeros(channels, dtype=np.float64)
    for b in range(batch):
        for y in range(height):
            for q in range(width):
                for c in range(channels):
                    acc[c] += dout[b, y, q, c]
    for c in range(channels):
        dbias[c] = acc[c]


def pack_weights(weights, dtype):
    """``weights[i] (C_h, 1, k_i, k_i)`` -> ``packed (K, K, C)``, each kernel centred, zeros elsewhere."""
    heads = len(weights)
    per_head = weights[0].shape[0]
    side = packed_size(heads)
    packed = np.zeros((side, side, heads * per_head), dtype=dtype)
    for head, w in enumerate(weights):
        k = w.shape[2]
        offset = (side - k) // 2
        packed[offset:offset + k, offset:offset + k, head * per_head:(head + 1) * per_head] = w[:, 0].transpose(1, 2, 0)
    return packed


def unpack_weights(packed, heads):
    """Inverse of :func:`pack_weights`: ``packed (K, K, C)`` -> tuple of ``(C_h, 1, k_i, k_i)``."""
    side = packed.shape[0]
    per_head = packed.shape[2] // heads
    result = []
    for head in range(heads):
        k = 3 + 2 * head
        offset = (side - k) // 2
        block = packed[offset:offset + k, offset:offset + k, head * per_head:(head + 1) * per_head]
        result.append(np.ascontiguousarray(block.transpose(2, 0, 1)[:, None]))
    return tuple(result)


def _head_taps(packed, heads, width):
    """``packed (K, K, C)`` -> ``(heads, K, K, W*C_h)``: each head's tap weights repeated along a head row."""
    side, _, channels = packed.shape
    by_head = packed.reshape(side, side, heads, channels // heads).transpose(2, 0, 1, 3)
    return np.ascontiguousarray(np.tile(by_head, (1, 1, 1, width)))


def _head_rows(a, heads):
    """``(B, H, W, C)`` -> contiguous ``(heads, B, H, W*C_h)``: head ``h``'s channels of each map row as one run."""
    batch, height, width, channels = a.shape
    by_head = a.reshape(batch, height, width, heads, channels // heads).transpose(3, 0, 1, 2, 4)
    return np.ascontiguousarray(by_head).reshape(heads, batch, height, width * (channels // heads))


def _correlate(x_heads, packed, bias, shape):
    """``out`` of ``shape (B, H, W, C)``: :func:`_correlate_heads` of the head rows ``x_heads`` (:func:`_head_rows`)
    with the ``packed`` kernels and ``bias``."""
    out = np.empty(shape, dtype=x_heads.dtype)
    _correlate_heads(x_heads, _head_taps(packed, x_heads.shape[0], shape[2]), bias, _as_rows(out))
    return out


def forward(x, weights, biases):
    heads = len(weights)
    packed = pack_weights(weights, x.dtype)
    bias = np.zeros(x.shape[3], dtype=x.dtype) if biases is None else np.concatenate(biases).astype(x.dtype)
    return _correlate(_head_rows(x, heads), packed, bias, x.shape)


def backward(dout, x, weights, has_bias):
    heads = len(weights)
    per_head = x.shape[3] // heads
    packed = pack_weights(weights, x.dtype)
    flipped = packed[::-1, ::-1, :]  # _head_taps copies it into the head layout
    dx = _correlate(_head_rows(dout, heads), flipped, np.zeros(x.shape[3], dtype=x.dtype), x.shape)
    side = packed.shape[0]
    radius = side // 2
    dpacked = weight_gradient(_as_rows(dout), _as_rows(x), (side, side), x.shape[3], ((1, 1), (radius, radius), (1, 1)))
    dbiases = None
    if has_bias:
        dbias = np.empty(x.shape[3], dtype=x.dtype)
        _channel_sums(dout, dbias)
        dbiases = tuple(np.ascontiguousarray(dbias[h * per_head:(h + 1) * per_head]) for h in range(heads))
    return dx, unpack_weights(dpacked, heads), dbiases
