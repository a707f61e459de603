"""Multi-head mixed depthwise convolution on the CPU: every head's kernel size in one pass.

The per-head kernels ``weights[i] (C_h, 1, 3+2i, 3+2i)`` are packed, centred, into one
channels-last array ``packed (K, K, C)`` with ``K = 2 * heads + 1`` (the largest kernel); the
taps outside a head's own radius stay zero and are never visited. Head ``i`` has radius ``1 + i``,
so the channels whose kernel holds tap ``(u, v)`` are those of heads ``max(|u|, |v|) - 1`` and up:
one contiguous range ending at ``C``, which is the innermost loop for every tap.

* forward: ``prange`` over output rows ``(b, y)``, a float64 accumulator per row, tap by tap.
* dx: the same correlation on ``dout`` with the packed kernels flipped (a gather, no scatter).
* dweights: ``prange`` over the taps of ``packed``; tap ``(u, v)`` sums ``dout * shifted x`` over
  all pixels for the channels whose radius reaches it, so every thread owns its own row of the result.
* dbiases: channel sums of ``dout`` in float64.
"""
import numpy as np
from numba import njit, prange



def packed_size(heads):
    """Side of the packed kernel array: the largest head kernel, ``3 + 2 * (heads - 1)``."""
    return 2 * heads + 1


@njit(cache=True)
def _first_channel(u, v, channels_per_head):
    """First channel whose kernel holds tap ``(u, v)``: head ``i`` has radius ``1 + i``, so the heads
    from ``max(|u|, |v|) - 1`` on reach it, and their channels run contiguously to ``C``."""
    return max(max(abs(u), abs(v)) - 1, 0) * channels_per_head


@njit(cache=True, parallel=True)
def _correlate_heads(x, packed, bias, channels_per_head, out):
    """out[b,y,q,c] = bias[c] + sum_{|u|,|v| <= r(c)} packed[R+u, R+v, c] * x[b, y+u, q+v, c], r(c) = 1 + c // C_h.

    One output row ``(b, y)`` per iteration, accumulated in float64; the loops run tap by tap so
    that the tap's weights and channel range are fixed while the pixels of the row go by.
    """
    batch, height, width, channels = x.shape
    side = packed.shape[0]
    centre = side // 2
    for row in prange(batch * height):
        b = row // height
        y = row % height
        acc = np.empty((width, channels), dtype=np.float64)
        for q in range(width):
            for c in range(channels):
                acc[q, c] = bias[c]
        for i in range(max(0, centre - y), min(side, centre + height - y)):
            u = i - centre
            x_row = x[b, y + u]
            for j in range(side):
                v = j - centre
                first = _first_channel(u, v, channels_per_head)
                taps = packed[i, j]
                for q in range(max(0, -v), min(width, width - v)):
                    pixel = x_row[q + v]
                    acc_pixel = acc[q]
                    for c in range(first, channels):
                        acc_pixel[c] += taps[c] * pixel[c]
        for q in range(width):
            target = out[b, y, q]
            for c in range(channels):
                target[c] = acc[q, c]


@njit(cache=True, parallel=True)
def _packed_weight_grad(dout, x, channels_per_head, dpacked):
    """dpacked[R+u, R+v, c] = sum_{b,y,q} dout[b,y,q,c] * x[b, y+u, q+v, c] for r(c) >= max(|u|, |v|), else 0."""
    batch, height, width, channels = x.shape
    side = dpacked.shape[0]
    centre = side // 2
    for tap in prange(side * side):
        u = tap // side - centre
        v = tap % side - centre
        first = _first_channel(u, v, channels_per_head)
        acc = np.zeros(channels, dtype=np.float64)
        for b in range(batch):
            for y in range(max(0, -u), min(height, height - u)):
                for q in range(max(0, -v), min(width, width - v)):
                    upstream = dout[b, y, q]
                    pixel = x[b, y + u, q + v]
                    for c in range(first, channels):
                        acc[c] += upstream[c] * pixel[c]
        target = dpacked[centre + u, centre + v]
        for c in range(channels):
            target[c] = acc[c]


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


def forward(x, weights, biases):
    x = np.ascontiguousarray(x)
    heads = len(weights)
    packed = pack_weights(weights, x.dtype)
    bias = np.zeros(x.shape[3], dtype=x.dtype) if biases is None else np.concatenate(biases).astype(x.dtype)
    out = np.empty_like(x)
    _correlate_heads(x, packed, bias, x.shape[3] // heads, out)
    return out


def backward(dout, x, weights, has_bias):
    x = np.ascontiguousarray(x)
    dout = np.ascontiguousarray(dout)
    heads = len(weights)
    per_head = x.shape[3] // heads
    flipped = np.ascontiguousarray(pack_weights(weights, x.dtype)[::-1, ::-1, :])
    dx = np.empty_like(x)
    _correlate_heads(dout, flipped, np.zeros(x.shape[3], dtype=x.dtype), per_head, dx)
    side = packed_size(heads)
    dpacked = np.empty((side, side, x.shape[3]), dtype=x.dtype)
    _packed_weight_grad(dout, x, per_head, dpacked)
    dbiases = None
    if has_bias:
        dbias = np.empty(x.shape[3], dtype=x.dtype)
        _channel_sums(dout, dbias)
        dbiases = tuple(np.ascontiguousarray(dbias[h * per_head:(h + 1) * per_head]) for h in range(heads))
    return dx, unpack_weights(dpacked, heads), dbiases
