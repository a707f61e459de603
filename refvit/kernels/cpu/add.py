r"""Broadcasting sum on the CPU.

Forward ``out = a + b``: NumPy's ufunc, which a Numba loop over the broadcast layout did not beat
(measured, see ``docs/backends.md``). Backward: each input's gradient is ``dout`` summed over the
axes that input was broadcast along, in the blocked float64 sum of
:mod:`refvit.kernels.cpu._broadcast` (a copy of ``dout`` when there are none).
"""
import numpy as np

from refvit.kernels._shapes import broadcast_axes
from refvit.kernels.cpu._broadcast import sum_to


def forward(a, b, out_shape):
    """``a (...a) + b (...b)`` -> ``out (out_shape)``."""
    return np.asarray(a + b)


def backward(dout, a_shape, b_shape):
    """-> ``(da (a_shape), db (b_shape))``."""
    return reduce_to(dout, a_shape), reduce_to(dout, b_shape)


def reduce_to(grad, shape):
    """``grad`` summed over the axes along which an array of ``shape`` was broadcast; of ``shape``."""
    axes = broadcast_axes(tuple(grad.shape), tuple(shape))
    if not axes:
        return np.array(grad).reshape(shape)  # a copy, as the reference's sum over no axes
    return sum_to(grad, axes, tuple(shape))
