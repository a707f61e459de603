"""Channel shuffle on the CPU: a gather, one ``prange`` iteration per pixel.

Output channel ``j * groups + i`` reads input channel ``i * n + j`` (``n = C / groups``). The
backward pass is the same gather with ``groups`` and ``n`` swapped.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry


@njit(cache=True, parallel=True)
def _shuffle(x, groups, y):
    pixels, channels = x.shape
    per_group = channels // groups
    for p in prange(pixels):
        for out_channel in range(channels):
            j = out_channel // groups
            i = out_channel - j * groups
            y[p, out_channel] = x[p, i * per_group + j]


@kernel_entry
def shuffle(x, groups):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    channels = x.shape[3]
    _shuffle(x.reshape(-1, channels), groups, y.reshape(-1, channels))
    return y
