"""The random stream of ``refvit.nn``: parameter initialisation, Dropout and DropPath.

One module-level NumPy ``Generator`` (PCG64). ``seed(n)`` restarts it; ``get_state()`` and
``set_state(state)`` save and restore it, so a training run that saves the state with its
checkpoint resumes with bit-identical dropout masks.
"""
from __future__ import annotations

import copy

import numpy as np

_generator = np.random.Generator(np.random.PCG64(0))


def seed(n: int) -> None:
    """Restart the stream from seed ``n``."""
    _generator.bit_generator.state = np.random.PCG64(n).state


def generator() -> np.random.Generator:
    """The generator itself (draws from it advance the stream)."""
    return _generator


def get_state() -> dict:
    """A copy of the stream's state (a dict, safe to pickle)."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_state(state: dict) -> None:
    """Continue the stream from a state returned by :func:`get_state`."""
    _generator.bit_generator.state = copy.deepcopy(state)
