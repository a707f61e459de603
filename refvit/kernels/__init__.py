"""Fast kernels behind the ops (private).

``refvit/kernels/cpu/<op>.py`` holds Numba ``@njit(cache=True)`` kernels and
``refvit/kernels/cuda/<op>.py`` holds ``numba.cuda`` kernels with their launch
helpers. An op loads its kernel module with :func:`load` so that ``numba.cuda``
is imported only when the ``cuda`` backend is used.

Each kernel module is checked against the op's ``numpy`` reference in
``tests/``; the interface between an op and its kernel module is private and
may differ from op to op.
"""
from __future__ import annotations

import importlib

_loaded = {}


def load(backend: str, name: str):
    """The kernel module ``refvit.kernels.<backend>.<name>``."""
    key = (backend, name)
    module = _loaded.get(key)
    if module is None:
        module = importlib.import_module(f"refvit.kernels.{backend}.{name}")
        _loaded[key] = module
    return module
