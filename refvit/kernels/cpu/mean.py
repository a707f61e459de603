r"""Mean over axes on the CPU: the blocked float64 sum of :mod:`refvit.kernels.cpu._broadcast`, times ``1/n``.

Backward: ``dout / n`` broadcast back along the reduced axes, NumPy's broadcast copy (the copy
itself: nothing for a kernel to gain).
"""
import numpy as np

from refvit.kernels._shapes import reduced_shape
from refvit.kernels.cpu._broadcast import sum_to


def forward(x, axes, keepdims, count):
    """``x (...)`` -> the mean over ``axes`` (``count`` elements each), reduced axes kept as 1 if ``keepdims``."""
    return sum_to(x, axes, reduced_shape(tuple(x.shape), axes, keepdims), scale=1.0 / count)


def backward(dout, x_shape, axes, count):
    """-> ``dx (x_shape)``, every element ``dout / count`` of its output position."""
    kept = np.reshape(dout, reduced_shape(tuple(x_shape), axes, keepdims=True))
    return np.broadcast_to(kept / max(count, 1), x_shape).copy()  # count 0: x is empty, so is dx
