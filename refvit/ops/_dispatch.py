"""How every op runs on its backend: the plumbing that is the same for all of them.

An op module checks its arguments and holds its math (``_forward_numpy``, ``_backward_numpy``);
each step of it then runs through :func:`run`::

    backend = dispatch.resolve(OP, backend)          # explicit backend or the current default
    x = check_array(OP, "x", x, backend)             # the op's own argument checks
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x,))

:func:`run` is the one place that decides what computes a call:

* ``numpy``: the reference, ``reference(*args)``;
* ``cpu``/``cuda``: the function ``forward`` or ``backward`` of the kernel module the op table
  (:mod:`refvit.ops._table`) names for that backend, with ``kernel_args`` (the reference's
  arguments unless the kernels take another form). The kernel module's entry picks its algorithm
  (e.g. the depthwise kernels for a depthwise ``conv2d``); the op never does;
* a backend the table gives no kernel module (``kernels={"cpu": None}``): the reference;
* ``cpu`` calls run under the thread rule of :mod:`refvit.kernels.cpu._threads` (BLAS on one
  thread, Numba on one thread for small calls), applied here so that no kernel can miss it;
* a call with an empty array among its arguments has nothing to compute: the reference gives its
  correctly shaped (empty, or zero, or NaN for a mean over nothing) result on every backend, with
  device arrays copied to the host and the results copied back (see ``docs/backends.md``).

Whatever the reference's forward saves for its backward, an empty call saves on any backend, and
its backward is empty too (it holds the same arrays), so it runs on the reference as well.
"""
from __future__ import annotations

import numpy as np

from refvit import kernels
from refvit._validate import is_device_array
from refvit.backend import resolve_backend
from refvit.ops import _table

STEPS = ("forward", "backward")


def resolve(op, backend):
    """The backend a call of ``op`` runs on: ``backend``, or the current default when it is ``None``."""
    return resolve_backend(backend, op)


def run(op, backend, step, reference, args, kernel_args=None):
    """One step (``"forward"`` or ``"backward"``) of ``op`` on ``backend``: ``reference(*args)`` or the
    backend's kernel entry ``step(*kernel_args)`` (``kernel_args=None``: ``args``). See the module docstring."""
    if step not in STEPS:
        raise ValueError(f"{op}: step must be one of {STEPS}; got {step!r}")
    module = None if backend == "numpy" else _table.spec(op).kernels.get(backend)
    if module is None:
        return reference(*args)
    if is_empty(args):
        return _on_host(reference, args)
    return kernels.call(backend, module, step, args if kernel_args is None else kernel_args)


def check_cache(op, cache, cache_type):
    """Refuse a ``cache`` that ``op``'s forward did not return (``None``, another op's cache, a tuple built
    by hand): ``TypeError`` naming the op and the argument, before the backward reads a field of it."""
    if not isinstance(cache, cache_type):
        raise TypeError(f"{op}: 'cache' must be the cache returned by {op}.forward; got {type(cache).__name__}")
    return cache


def is_empty(values):
    """True when an array with no elements is among ``values`` (searched through tuples and lists)."""
    for value in values:
        kind = type(value)
        if kind is np.ndarray:  # the common cases first: arrays, then shapes, numbers and None
            if value.size == 0:
                return True
        elif kind is tuple or kind is list or isinstance(value, (tuple, list)):
            if is_empty(value):
                return True
        elif kind in _NOT_ARRAYS:
            continue
        elif (isinstance(value, np.ndarray) or is_device_array(value)) and _size(value) == 0:
            return True
    return False


_NOT_ARRAYS = frozenset((int, float, bool, str, type(None), np.float32, np.float64, np.int64))


def _size(array):
    return array.size  # NumPy and numba.cuda device arrays both have it (np.prod of the shape cost ~4 us a call)


def _on_host(reference, args):
    """``reference(*args)`` with device arrays copied to the host; the results go back to the device
    when any argument was a device array."""
    on_device = _any_device(args)
    result = reference(*_map_arrays(args, _to_host))
    return _map_arrays(result, _to_device) if on_device else result


def _any_device(values):
    return any(_any_device(v) if isinstance(v, (tuple, list)) else is_device_array(v) for v in values)


def _map_arrays(value, convert):
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple keeps its type
        return type(value)(*(_map_arrays(v, convert) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_arrays(v, convert) for v in value)
    return convert(value)


def _to_host(value):
    return value.copy_to_host() if is_device_array(value) else value


def _to_device(value):
    if isinstance(value, np.ndarray):
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(value))
    return value
