"""A small reverse-mode tape that chains the ops' own ``backward`` functions.

* :class:`Tensor`: an array with ``requires_grad``, ``grad`` and ``backward``.
* :func:`apply`: call an op on ``Tensor``s and record it (:mod:`refvit.autograd.tape`).
* :func:`no_grad`, :func:`enable_grad`, :func:`is_grad_enabled`: switch recording.
* Structural ops (reshape, permute, concatenate, split, getitem, pad, broadcast_to)
  with hand-written forward/backward pairs (:mod:`refvit.autograd.shape`) and their
  ``Tensor`` functions (:mod:`refvit.autograd.functions`).

See ``docs/autograd.md``.
"""
from refvit.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from refvit.autograd.tensor import Tensor
from refvit.autograd.tape import Node, apply
from refvit.autograd import shape
from refvit.autograd.functions import (
    broadcast_to, cat, chunk, concatenate, expand, flatten, getitem, pad, permute, reshape, split, squeeze,
    stack, transpose, unsqueeze,
)

__all__ = [
    "Node", "Tensor", "apply", "broadcast_to", "cat", "chunk", "concatenate", "enable_grad", "expand", "flatten",
    "getitem", "is_grad_enabled", "no_grad", "pad", "permute", "reshape", "set_grad_enabled", "shape", "split",
    "squeeze", "stack", "transpose", "unsqueeze",
]
