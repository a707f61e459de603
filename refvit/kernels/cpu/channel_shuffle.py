"""Channel shuffle on the CPU: a gather, one ``prange`` iteration per pixel.

Output channel ``j * groups + i`` reads input channel ``i * n + j`` (``n = C / groups``). The
backward pass is the same gather with ``groups`` and ``n`` swapped.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _shuffle(x, groups, y):
    pixels, channels = x.shape
    per_group = channels // groups
    for p in prange(pixels):
        for out_channel in range(channels):
            j = out_channel // groups
            i = out_channel - j * groups
            y[p, out_channel] = x[p, i * per_group + j]


def forward(x, groups):
    """``x (B, H, W, C)`` -> ``y``, channel ``j * groups + i`` of ``y`` from channel ``i * n + j`` of ``x``."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    channels = x.shape[3]
    _shuffle(x.reshape(-1, channels), groups, y.reshape(-1, channels))
    return y


def backward(dout, channels_per_group):
    """The inverse shuffle: :func:`forward` with ``groups`` and ``n`` swapped (the op passes ``n``)."""
    return forward(dout, channels_per_group)
