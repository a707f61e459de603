"""Fast kernels behind the ops (private).

``refvit/kernels/cpu/<op>.py`` holds Numba ``@njit(cache=True)`` kernels and
``refvit/kernels/cuda/<op>.py`` holds ``numba.cuda`` kernels with their launch
helpers. Each kernel module's entry functions, ``forward`` and ``backward``, are called
by the op dispatch (:mod:`refvit.ops._dispatch`) through :func:`call`, which imports the
module on first use (so ``numba.cuda`` is imported only when the ``cuda`` backend is used)
and runs every ``cpu`` entry under the thread rule of :mod:`refvit.kernels.cpu._threads`.

The op layer picks the math; a kernel module's entry picks the algorithm (for example
``cpu/conv2d.py`` hands a depthwise convolution to ``cpu/depthwise_conv2d.py``). The
arguments of an entry are private to its op and may differ from op to op. Each kernel
module is checked against the op's ``numpy`` reference in ``tests/``.
"""
from __future__ import annotations

import importlib

_loaded = {}


def load(backend: str, name: str):
    """The kernel module ``refvit.kernels.<backend>.<name>`` (``name`` may also be the full dotted path)."""
    key = (backend, name)
    module = _loaded.get(key)
    if module is None:
        path = name if name.startswith("refvit.") else f"refvit.kernels.{backend}.{name}"
        module = importlib.import_module(path)
        _loaded[key] = module
    return module


_cpu_rule = []  # the module of the thread rule, once imported


def call(backend: str, name: str, step: str, args):
    """``step(*args)`` of the kernel module ``name`` of ``backend``; on ``cpu`` under the thread rule."""
    module = _loaded.get((backend, name)) or load(backend, name)
    function = getattr(module, step)  # looked up on each call: a test may replace an entry
    if backend == "cpu":
        if not _cpu_rule:  # imported on first use, so that the numpy backend never imports Numba
            from refvit.kernels.cpu import _threads

            _cpu_rule.append(_threads)
        return _cpu_rule[0].run_as_kernel_entry(function, args)  # looked up on each call, as the entry
    return function(*args)
