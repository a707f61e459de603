"""The ``needs`` argument of an op's ``backward``: which input gradients the caller reads.

``backward(dout, cache, needs=None)``: ``needs`` is ``None`` (every gradient) or a tuple of bools, one per
name in the op's ``DIFFERENTIABLE``, in that order; the backward returns ``None`` in place of a gradient
whose flag is False and may skip computing it. The tape passes it from the parents it recorded
(``docs/autograd.md``).
"""
from __future__ import annotations

import numpy as np


def check_needs(op, needs, differentiable):
    """``needs`` as a tuple of Python bools of ``len(differentiable)`` (all True for ``None``).

    ``TypeError`` naming ``op`` for something that is not a tuple or list of bools, ``ValueError`` for the
    wrong length."""
    if needs is None:
        return (True,) * len(differentiable)
    if not isinstance(needs, (tuple, list)):
        raise TypeError(f"{op}: 'needs' must be a tuple of bools, one per input in {tuple(differentiable)}; "
                        f"got {type(needs).__name__}")
    if len(needs) != len(differentiable):
        raise ValueError(f"{op}: 'needs' must have one bool per input in {tuple(differentiable)} "
                         f"({len(differentiable)}); got {len(needs)}")
    for name, flag in zip(differentiable, needs):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{op}: 'needs' must hold bools; got {type(flag).__name__} for '{name}'")
    return tuple(bool(flag) for flag in needs)
