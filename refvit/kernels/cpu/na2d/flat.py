"""``(B, heads, H, W, d)`` arrays as the C-contiguous ``(B*heads, H, W, d)`` the ``na2d`` kernels take.

The models hand ``q``, ``k``, ``v`` over as strided views of one ``qkv`` projection; ``np.ascontiguousarray``
copies such a view on one thread. :func:`flat` copies a view of at least :data:`PARALLEL_MIN_SIZE`
elements in a ``prange`` over (map, row) instead, and returns a contiguous array without a copy.
"""
import numpy as np
from numba import njit, prange

# Smaller views are copied by numpy: the parallel region costs more than it saves. Wall clock, two
# threads, the three views of a (B, H, W, 3, heads, d) projection: (64, 8, 8, 3, 1, 32) (131072 elements
# each) 0.087-0.092 ms against 0.133-0.158; (64, 4, 4, 3, 2, 32) (65536) 0.053-0.055 against 0.037-0.039.
PARALLEL_MIN_SIZE = 1 << 17


@njit(cache=True, parallel=True)
def _gather(a, result):
    """``result[b*heads + h, x] = a[b, h, x]`` for every row ``x``."""
    batch, heads, height = a.shape[:3]
    for task in prange(batch * heads * height):
        b = task // (heads * height)
        h = (task // height) % heads
        x = task % height
        result[b * heads + h, x] = a[b, h, x]


def flat(a):
    """``a (B, heads, H, W, d)`` -> C-contiguous ``(B*heads, H, W, d)``; a view when ``a`` is contiguous."""
    batch, heads = a.shape[:2]
    shape = (batch * heads,) + a.shape[2:]
    if a.flags.c_contiguous:
        return a.reshape(shape)
    if a.size < PARALLEL_MIN_SIZE:
        return np.ascontiguousarray(a).reshape(shape)
    result = np.empty(shape, a.dtype)
    if result.size:
        _gather(a, result)
    return result
