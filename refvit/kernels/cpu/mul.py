r"""Broadcasting product on the CPU.

Forward ``out = a * b`` and the products of the backward: NumPy's ufunc (measured, see
``docs/backends.md``). Backward ``da = sum_to_a(dout * b)``, ``db = sum_to_b(dout * a)``: the sums
as for ``add``, in the blocked float64 sum of :mod:`refvit.kernels.cpu._broadcast`.
"""
import numpy as np

from refvit.kernels.cpu.add import reduce_to


def forward(a, b, out_shape):
    """``a (...a) * b (...b)`` -> ``out (out_shape)``."""
    return np.asarray(a * b)


def backward(dout, a, b):
    """-> ``(da (a.shape), db (b.shape))``."""
    return reduce_to(dout * b, a.shape), reduce_to(dout * a, b.shape)
