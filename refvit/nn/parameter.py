"""``Parameter``: a leaf ``Tensor`` that a ``Module`` registers and an optimiser updates.

Modules create their parameters in the default dtype, float32 as in PyTorch, unless
given ``dtype=``; :func:`set_default_dtype` changes it (``np.float64`` for gradient
checks of whole models), and ``Module.to(np.float64)`` casts an existing module.
"""
from __future__ import annotations

import numpy as np

from refvit._validate import FLOAT_DTYPES
from refvit.autograd.tensor import Tensor

_default_dtype = np.dtype(np.float32)


def get_default_dtype() -> np.dtype:
    """The dtype new parameters and buffers get when a module is given no ``dtype``."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Make ``dtype`` (``np.float32`` or ``np.float64``) the dtype of new parameters."""
    global _default_dtype
    _default_dtype = check_float_dtype("set_default_dtype", dtype)


def check_float_dtype(where, dtype):
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{where}: 'dtype' must be np.float32 or np.float64; got {dtype!r}")
    return resolved


def resolve_dtype(dtype):
    """``dtype`` checked, or the default dtype when ``None``."""
    return _default_dtype if dtype is None else check_float_dtype("Module", dtype)


class Parameter(Tensor):
    """A ``Tensor`` with ``requires_grad=True`` that a ``Module`` attribute registers."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
