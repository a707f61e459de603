"""Multi-head mixed depthwise convolution on the GPU: every head's kernel size in one launch.

As on the CPU, the per-head kernels are packed, centred, into ``packed (K, K, C)``
(``K = 2 * heads + 1``) on the device; a thread visits only the taps within its channel's radius
``1 + c // C_h``.

* forward and dx: one thread per output element ``(b, y, q, c)`` (dx runs the forward kernel on
  ``dout`` with the packed kernels flipped: a gather, no atomics).
* dweights: one thread per packed tap and channel ``(u, v, c)``, summing over all pixels.
* dbiases: one thread per channel.
* pack/unpack: one thread per element of a head's kernel (or bias), copying between the per-head
  PyTorch layout and the packed array, so device arrays never visit the host.
"""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless, zeros
from refvit.kernels.cuda._window import nhwc_position


@cuda.jit(device=True)
def _head_tap(i, side):
    """Flat index into a head's kernel ``(C_h, 1, side, side)`` -> ``(channel j, row s, column t)``."""
    return i // (side * side), (i // side) % side, i % side


@cuda.jit
def _pack_kernel(w, first_channel, offset, flip, packed):
    """packed[offset+s, offset+t, first+j] = w[j, 0, s, t] (s, t mirrored when ``flip``)."""
    i = cuda.grid(1)
    side = w.shape[2]
    if i < w.size:
        j, s, t = _head_tap(i, side)
        if flip:
            packed[offset + side - 1 - s, offset + side - 1 - t, first_channel + j] = w[j, 0, s, t]
        else:
            packed[offset + s, offset + t, first_channel + j] = w[j, 0, s, t]


def _pack(weights, dtype, flip):
    heads = len(weights)
    per_head = weights[0].shape[0]
    side = 2 * heads + 1
    packed = zeros((side, side, heads * per_head), dtype)
    for head, w in enumerate(weights):
        k = w.shape[2]
        _pack_kernel[grid_1d(w.size)](w, head * per_head, (side - k) // 2, flip, packed)
    return packed


@cuda.jit
def _unpack_kernel(packed, first_channel, offset, w):
    """w[j, 0, s, t] = packed[offset+s, offset+t, first+j]."""
    i = cuda.grid(1)
    if i < w.size:
        j, s, t = _head_tap(i, w.shape[2])
        w[j, 0, s, t] = packed[offset + s, offset + t, first_channel + j]


def _unpack(packed, heads):
    side = packed.shape[0]
    per_head = packed.shape[2] // heads
    result = []
    for head in range(heads):
        k = 3 + 2 * head
        w = empty((per_head, 1, k, k), packed.dtype)
        _unpack_kernel[grid_1d(w.size)](packed, head * per_head, (side - k) // 2, w)
        result.append(w)
    return tuple(result)


@cuda.jit
def _copy_kernel(source, source_start, target, target_start, count):
    """target[target_start + i] = source[source_start + i] for i < count."""
    i = cuda.grid(1)
    if i < count:
        target[target_start + i] = source[source_start + i]


@cuda.jit
def _correlate_kernel(x, packed, bias, channels_per_head, out):
    """out[b,y,q,c] = bias[c] + sum_{|u|,|v| <= 1 + c // C_h} packed[R+u, R+v, c] * x[b, y+u, q+v, c]."""
    i = cuda.grid(1)
    batch, height, width, channels = x.shape
    if i < batch * height * width * channels:
        b, y, q, c = nhwc_position(i, height, width, channels)
        radius = 1 + c // channels_per_head
        centre = packed.shape[0] // 2
        acc = 0.0
        for u in range(-radius, radius + 1):
            yy = y + u
            if yy >= 0 and yy < height:
                for v in range(-radius, radius + 1):
                    xx = q + v
                    if xx >= 0 and xx < width:
                        acc += packed[centre + u, centre + v, c] * x[b, yy, xx, c]
        out[b, y, q, c] = acc + bias[c]


def _correlate(x, packed, bias, channels_per_head):
    out = empty(x.shape, x.dtype)
    _correlate_kernel[grid_1d(x.size)](x, packed, bias, channels_per_head, out)
    return out


@cuda.jit
def _packed_weight_grad_kernel(dout, x, channels_per_head, dpacked):
    """dpacked[R+u, R+v, c] = sum_{b,y,q} dout[b,y,q,c] * x[b, y+u, q+v, c] within the channel's radius, else 0."""
    i = cuda.grid(1)
    side, _, channels = dpacked.shape
    if i < side * side * channels:
        c = i % channels
        centre = side // 2
        u = (i // channels) // side - centre
        v = (i // channels) % side - centre
        radius = 1 + c // channels_per_head
        acc = 0.0
        if max(abs(u), abs(v)) <= radius:
            batch, height, width, _ = x.shape
            for b in range(batch):
                for y in range(max(0, -u), min(height, height - u)):
                    for q in range(max(0, -v), min(width, width - v)):
                        acc += dout[b, y, q, c] * x[b, y + u, q + v, c]
        dpacked[centre + u, centre + v, c] = acc


@cuda.jit
def _channel_sum_kernel(dout, dbias):
    """dbias[c] = sum_{b,y,q} dout[b,y,q,c]."""
    c = cuda.grid(1)
    batch, height, width, channels = dout.shape
    if c < channels:
        acc = 0.0
        for b in range(batch):
            for y in range(height):
                for q in range(width):
                    acc += dout[b, y, q, c]
        dbias[c] = acc


def _bias_vector(biases, channels, dtype):
    """Concatenate the per-head biases on the device (zeros when there are none)."""
    bias = zeros((channels,), dtype)
    if biases is not None:
        per_head = channels // len(biases)
        for head, b in enumerate(biases):
            _copy_kernel[grid_1d(per_head)](b, 0, bias, head * per_head, per_head)
    return bias


def forward(x, weights, biases):
    on_device = any_device(x, *weights, *(biases or ()))
    (x,) = to_device(x)
    weights = to_device(*weights)
    biases = None if biases is None else to_device(*biases)
    heads = len(weights)
    channels = x.shape[3]
    out = _correlate(x, _pack(weights, x.dtype, False), _bias_vector(biases, channels, x.dtype), channels // heads)
    return to_host_unless(on_device, out)


def backward(dout, x, weights, has_bias):
    on_device = any_device(dout, x, *weights)
    dout, x = to_device(dout, x)
    weights = to_device(*weights)
    heads = len(weights)
    channels = x.shape[3]
    per_head = channels // heads
    dx = _correlate(dout, _pack(weights, x.dtype, True), zeros((channels,), x.dtype), per_head)
    side = 2 * heads + 1
    dpacked = empty((side, side, channels), x.dtype)
    _packed_weight_grad_kernel[grid_1d(dpacked.size)](dout, x, per_head, dpacked)
    dweights = _unpack(dpacked, heads)
    dbiases = None
    if has_bias:
        dbias = empty((channels,), x.dtype)
        _channel_sum_kernel[grid_1d(channels)](dout, dbias)
        dbiases = []
        for head in range(heads):
            part = empty((per_head,), x.dtype)
            _copy_kernel[grid_1d(per_head)](dbias, head * per_head, part, 0, per_head)
            dbiases.append(part)
    if on_device:
        return dx, dweights, None if dbiases is None else tuple(dbiases)
    dx = dx.copy_to_host()
    dweights = tuple(w.copy_to_host() for w in dweights)
    return dx, dweights, None if dbiases is None else tuple(b.copy_to_host() for b in dbiases)
