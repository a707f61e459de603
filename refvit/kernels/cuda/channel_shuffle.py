"""Channel shuffle on the GPU: a gather, one thread per output element.

Output channel ``j * groups + i`` reads input channel ``i * n + j`` (``n = C / groups``). The
backward pass is the same gather with ``groups`` and ``n`` swapped.
"""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit
def _shuffle_kernel(x, groups, channels, y):
    index = cuda.grid(1)
    if index < y.size:
        pixel = index // channels
        out_channel = index - pixel * channels
        j = out_channel // groups
        i = out_channel - j * groups
        y[index] = x[pixel * channels + i * (channels // groups) + j]


def forward(x, groups):
    """``x (B, H, W, C)`` -> ``y``, channel ``j * groups + i`` of ``y`` from channel ``i * n + j`` of ``x``."""
    on_device = any_device(x)
    (x,) = to_device(x)
    y = empty(x.shape, x.dtype)
    channels = x.shape[3]
    _shuffle_kernel[grid_1d(x.size)](x.reshape(x.size), groups, channels, y.reshape(y.size))
    return to_host_unless(on_device, y)


def backward(dout, channels_per_group):
    """The inverse shuffle: :func:`forward` with ``groups`` and ``n`` swapped (the op passes ``n``)."""
    return forward(dout, channels_per_group)
