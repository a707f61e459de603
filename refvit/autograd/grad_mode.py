"""Whether ops called on ``Tensor``s are recorded on the tape.

Recording is on by default. ``with no_grad(): ...`` turns it off for a block
(evaluation, optimiser updates): results of ops made inside have no history and
``requires_grad=False``, and the ops' caches are dropped at once. The switch is a
context variable, so it nests and does not leak between threads.
"""
from __future__ import annotations

import contextlib
import contextvars

_enabled = contextvars.ContextVar("refvit_grad_enabled", default=True)


def is_grad_enabled() -> bool:
    """True when ops on ``Tensor``s are being recorded."""
    return _enabled.get()


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    """``with set_grad_enabled(False): ...`` runs the block with recording on or off."""
    token = _enabled.set(bool(mode))
    try:
        yield
    finally:
        _enabled.reset(token)


def no_grad():
    """``with no_grad(): ...``: nothing made inside the block is recorded."""
    return set_grad_enabled(False)


def enable_grad():
    """``with enable_grad(): ...``: recording on inside the block, even within ``no_grad``."""
    return set_grad_enabled(True)
