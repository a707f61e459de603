"""A line on stderr when Numba starts compiling, and the time compiling took.

Numba compiles a kernel the first time it is called with a new signature, unless its
on-disk cache (``cache=True``: ``__pycache__`` next to the kernel's source, or
``NUMBA_CACHE_DIR``) already holds it. Numba announces each real compilation as a
``"numba:compile"`` event (:mod:`numba.core.event`); a load from the cache sends none.
:func:`watch_compiles` listens for those events, so the notice is exact: it is printed on a
cold cache, at the first kernel compiled, and never on a warm one, with nothing to guess
from the cache's files.

:func:`compile_seconds` is the time spent compiling so far (outermost compilations only: a
kernel compiled while compiling its caller is counted once), which
:class:`~refvit.train.progress.ProgressBar` leaves out of its throughput and time left.
"""
from __future__ import annotations

import contextlib
import sys
import time

NOTICE = ("compiling {backend} kernels for {dtype}, first run only (cached on disk, later runs start at once); "
          "this takes up to a minute or two ...")

_state = {"seconds": 0.0}


def compile_seconds():
    """Seconds spent in Numba compilations since this process started watching (0.0 before)."""
    return _state["seconds"]


def _listener_class():
    from numba.core import event

    class _Compiles(event.Listener):
        def __init__(self, on_first):
            self.depth, self.started, self.on_first = 0, None, on_first

        def on_start(self, ev):
            if self.depth == 0:
                self.started = time.perf_counter()
                if self.on_first is not None:
                    on_first, self.on_first = self.on_first, None
                    on_first()
            self.depth += 1

        def on_end(self, ev):
            self.depth -= 1
            if self.depth == 0 and self.started is not None:
                _state["seconds"] += time.perf_counter() - self.started
                self.started = None

    return _Compiles


def model_dtype(model):
    """The name of the dtype of ``model``'s first parameter (``"float32"`` for a model without any)."""
    for parameter in model.parameters():
        return str(parameter.dtype)
    return "float32"


@contextlib.contextmanager
def watch_compiles(backend, dtype="float32", stream=None, notice=True):
    """While inside, count Numba's compile time and, with ``notice``, print :data:`NOTICE` once,
    when the first kernel is compiled (a cold cache). Nothing happens for the ``numpy`` backend
    or when Numba is not importable."""
    if backend == "numpy":
        yield
        return
    try:
        from numba.core import event
    except ImportError:
        yield
        return
    output = sys.stderr if stream is None else stream

    def announce():
        output.write(NOTICE.format(backend=backend, dtype=dtype) + "\n")
        output.flush()

    listener = _listener_class()(announce if notice else None)
    with event.install_listener("numba:compile", listener):
        yield
