"""The dispatch shared by elementwise ops of one input (relu, sigmoid, silu, tanh).

Each such op module keeps its math (``_forward_numpy``, ``_backward_numpy`` and the
docstring); this module holds the part they share: checking ``x``, choosing the backend,
and saving whichever of ``x`` or the output its backward formula reads.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit import kernels
from refvit._validate import check_array, check_grad
from refvit.backend import resolve_backend


class Cache(NamedTuple):
    saved: np.ndarray  # x, or the output for ops whose derivative is a function of it
    backend: str


def forward(op, x, backend, numpy_forward, save="x"):
    """``(out, Cache)`` of an elementwise op; ``save`` is ``"x"`` or ``"out"``."""
    backend = resolve_backend(backend, op)
    x = check_array(op, "x", x, backend)
    if backend == "numpy":
        out = np.asarray(numpy_forward(x))  # a ufunc gives a NumPy scalar for a 0-d input
    else:
        out = kernels.load(backend, op).forward(x)
    return out, Cache(out if save == "out" else x, backend)


def backward(op, dout, cache, numpy_backward):
    """``(dx,)`` from the saved array: ``numpy_backward(dout, saved)`` or the backend's kernel."""
    dout = check_grad(op, dout, cache.saved)
    if cache.backend == "numpy":
        return (np.asarray(numpy_backward(dout, cache.saved)),)
    return (kernels.load(cache.backend, op).backward(dout, cache.saved),)
