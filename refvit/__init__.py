"""refvit: reference NumPy + Numba implementations of the operations behind DiNAT,
CSWin, SMT, DualViT and CoAtNet, each with a hand-written backward pass.

Layers (see ``docs/index.md``): ``refvit.ops`` (the math), ``refvit.kernels`` (Numba
CPU and CUDA kernels), ``refvit.autograd`` (``Tensor`` and the tape),
``refvit.functional``, ``refvit.nn``, ``refvit.models``, ``refvit.optim``,
``refvit.data``, ``refvit.train`` and ``refvit.testing``.
"""
from __future__ import annotations

import importlib

from refvit.backend import BACKENDS, cuda_available, get_backend, set_backend, use_backend
from refvit.errors import UserError, UserTypeError

__version__ = "0.1.0"

_SUBMODULES = ("ops", "kernels", "autograd", "functional", "nn", "models", "optim", "data", "train", "testing")

__all__ = ["BACKENDS", "Tensor", "UserError", "UserTypeError", "cuda_available", "get_backend", "set_backend", "use_backend", *_SUBMODULES]


def __getattr__(name):
    if name == "Tensor":
        from refvit.autograd import Tensor

        return Tensor
    if name in _SUBMODULES:
        module = importlib.import_module(f"refvit.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'refvit' has no attribute {name!r}")
