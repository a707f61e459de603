"""The math: one module per operation, NumPy in, NumPy out.

Each op module ``refvit.ops.<name>`` has

* ``forward(*inputs, **options, backend=None) -> (out, cache)``
* ``backward(dout, cache) -> tuple``, one gradient per name in ``DIFFERENTIABLE``
  (``None`` for an optional input that was ``None``)
* ``DIFFERENTIABLE``: the names of the differentiable inputs, in signature order
* ``example(rng)``: small float64 inputs ``(args, kwargs)``, valid on every backend.

The ``numpy`` backend inside each module is the readable specification; the ``cpu`` and ``cuda``
backends call the kernels in :mod:`refvit.kernels`. Every op is registered once in the op table
(:func:`table`, :func:`spec`; see :mod:`refvit.ops._table`), and every call runs through the one
dispatch of :mod:`refvit.ops._dispatch`. Modules are imported on first use:
``from refvit import ops; ops.na2d.forward(...)``.
"""
from __future__ import annotations

import importlib

from refvit.ops._table import OpSpec, spec, table  # noqa: F401  (re-exported)
from refvit.ops._table import names as _names


def list_ops():
    """Names of all ops, sorted (the op table's)."""
    return list(_names())


def __getattr__(name):
    if name.startswith("_") or name not in _names():
        raise AttributeError(f"module 'refvit.ops' has no op {name!r}; ops are: {', '.join(_names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    globals()[name] = module
    return module


def __dir__():
    return sorted(set(globals()) | set(_names()))
