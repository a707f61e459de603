"""The math: one module per operation, NumPy in, NumPy out.

Each op module ``refvit.ops.<name>`` has

* ``forward(*inputs, **options, backend=None) -> (out, cache)``
* ``backward(dout, cache) -> tuple``, one gradient per name in ``DIFFERENTIABLE``
  (``None`` for an optional input that was ``None``)
* ``DIFFERENTIABLE``: the names of the differentiable inputs, in signature order.

The ``numpy`` backend inside each module is the readable specification; the
``cpu`` and ``cuda`` backends call the kernels in :mod:`refvit.kernels`.
Modules are imported on first use: ``from refvit import ops; ops.na2d.forward(...)``.
"""
from __future__ import annotations

import importlib
import pkgutil


def list_ops():
    """Names of all op modules."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name):
    if name.startswith("_") or name not in list_ops():
        raise AttributeError(f"module 'refvit.ops' has no op {name!r}; ops are: {', '.join(list_ops())}")
    module = importlib.import_module(f"{__name__}.{name}")
    globals()[name] = module
    return module


def __dir__():
    return sorted(set(globals()) | set(list_ops()))
