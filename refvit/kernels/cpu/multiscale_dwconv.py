"""Multi-head mixed depthwise convolution on the CPU: every head's kernel size in one pass.

The per-head kernels ``weights[i] (C_h, 1, 3+2i, 3+2i)`` are packed, centred, into one
channels-last array ``packed (K, K, C)`` with ``K = 2 * heads + 1`` (the largest kernel); the
taps outside a head's own radius stay zero. Head ``i`` has radius ``1 + i``, so the channels whose
kernel holds tap ``(u, v)`` are those of heads ``max(|u|, |v|) - 1`` and up: one contiguous range
ending at ``C``.

* forward: ``prange`` over output rows ``(b, y)``, accumulated in the input dtype in the output
  row itself, tap by tap (at most ``K*K`` terms per element, as :mod:`depthwise_conv2d` does).
  A map row is one contiguous run of ``W*C`` numbers and the packed weights are repeated along it
  (``tap_rows[i, j, q*C + c] = packed[i, j, c]``), so a tap that every channel holds (the 3x3
  centre) is one multiply-add over the whole row, which Numba turns into SIMD code; the other
  taps add one run of ``C - first`` channels per pixel. Taps outside a channel's radius are
  never visited, so a NaN reaches only the pixels its own head's kernel covers.
* dx: the same correlation on ``dout`` with the packed kernels flipped (a gather, no scatter).
* dweights: the depthwise kernel's per-block products over the packed ``K x K`` window
  (:func:`refvit.kernels.cpu.depthwise_conv2d.weight_gradient`), finished in float64; the taps
  outside each head's kernel are computed there too and dropped by :func:`unpack_weights`.
* dbiases: channel sums of ``dout`` in float64.

Measured at smt_nano's first stage, (64, 8, 8, 32) with 4 heads, one thread, CPU time, the least of
9 calls, 3 runs (``python examples/conv2d_shapes.py --cpu-time --repeat 9 --filter multiscale``):
forward 3.65-3.83 -> 1.22-1.25 ms, forward + backward 11.2-11.8 -> 4.04-4.15 ms (PyTorch 5.26-5.49 ms)
against the former loops, which accumulated every row in float64 one pixel's channel range at a
time. ``docs/ops/multiscale_dwconv.md`` has the other shapes.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.depthwise_conv2d import weight_gradient


def packed_size(heads):
    """Side of the packed kernel array: the largest head kernel, ``3 + 2 * (heads - 1)``."""
    return 2 * heads + 1


@njit(cache=True)
def _first_channel(u, v, channels_per_head):
    """First channel whose kernel holds tap ``(u, v)``: head ``i`` has radius ``1 + i``, so the heads
    from ``max(|u|, |v|) - 1`` on reach it, and their channels run contiguously to ``C``."""
    return max(max(abs(u), abs(v)) - 1, 0) * channels_per_head


@njit(cache=True)
def _multiply_add(target, a, b):
    """``target += a * b`` elementwise over equal-length 1-D runs."""
    for t in range(target.shape[0]):
        target[t] += a[t] * b[t]


@njit(cache=True, parallel=True)
def _correlate_heads(x_rows, tap_rows, bias, channels_per_head, out_rows):
    """out[b,y,q,c] = bias[c] + sum_{|u|,|v| <= r(c)} packed[R+u, R+v, c] * x[b, y+u, q+v, c], r(c) = 1 + c // C_h.

    ``x_rows``, ``out_rows (B, H, W*C)``; ``tap_rows (K, K, W*C)`` the packed weights repeated along
    a row; ``bias (C,)``. One output row ``(b, y)`` per iteration, summed into the row itself, tap by
    tap: a tap held by every channel is one run over the row, any other one run per pixel.
    """
    batch, height, run = x_rows.shape
    channels = bias.shape[0]
    width = run // channels
    side = tap_rows.shape[0]
    centre = side // 2
    for row in prange(batch * height):
        b = row // height
        y = row % height
        target = out_rows[b, y]
        for q in range(width):
            for c in range(channels):
                target[q * channels + c] = bias[c]
        for i in range(max(0, centre - y), min(side, centre + height - y)):
            u = i - centre
            source = x_rows[b, y + u]
            for j in range(side):
                v = j - centre
                first = _first_channel(u, v, channels_per_head)
                taps = tap_rows[i, j]
                start, stop = max(0, -v), min(width, width - v)
                if first == 0:
                    _multiply_add(target[start * channels:stop * channels],
                                  source[(start + v) * channels:(stop + v) * channels],
                                  taps[start * channels:stop * channels])
                    continue
                for q in range(start, stop):
                    o = q * channels
                    n = (q + v) * channels
                    _multiply_add(target[o + first:o + channels], source[n + first:n + channels],
                                  taps[o + first:o + channels])


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


def _tap_rows(packed, width):
    """``packed (K, K, C)`` -> ``(K, K, W*C)``: each tap's weights repeated along a map row."""
    return np.ascontiguousarray(np.tile(packed, (1, 1, width)))


def _as_rows(a):
    """``(B, H, W, C)`` -> contiguous ``(B, H, W*C)``."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], a.shape[2] * a.shape[3])


def forward(x, weights, biases):
    heads = len(weights)
    packed = pack_weights(weights, x.dtype)
    bias = np.zeros(x.shape[3], dtype=x.dtype) if biases is None else np.concatenate(biases).astype(x.dtype)
    out = np.empty(x.shape, dtype=x.dtype)
    _correlate_heads(_as_rows(x), _tap_rows(packed, x.shape[2]), bias, x.shape[3] // heads, _as_rows(out))
    return out


def backward(dout, x, weights, has_bias):
    heads = len(weights)
    per_head = x.shape[3] // heads
    packed = pack_weights(weights, x.dtype)
    flipped = packed[::-1, ::-1, :]
    dout_rows, x_rows = _as_rows(dout), _as_rows(x)
    dx = np.empty(x.shape, dtype=x.dtype)
    _correlate_heads(dout_rows, _tap_rows(flipped, x.shape[2]), np.zeros(x.shape[3], dtype=x.dtype), per_head,
                     _as_rows(dx))
    side = packed.shape[0]
    radius = side // 2
    dpacked = weight_gradient(dout_rows, x_rows, (side, side), x.shape[3], ((1, 1), (radius, radius), (1, 1)))
    dbiases = None
    if has_bias:
        dbias = np.empty(x.shape[3], dtype=x.dtype)
        _channel_sums(dout, dbias)
        dbiases = tuple(np.ascontiguousarray(dbias[h * per_head:(h + 1) * per_head]) for h in range(heads))
    return dx, unpack_weights(dpacked, heads), dbiases
