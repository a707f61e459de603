r"""Gradient clipping by the joint norm of all gradients, as ``torch.nn.utils.clip_grad_norm_``.

.. math::  N = \Bigl(\sum_{\text{params}} \lVert g \rVert_p^p\Bigr)^{1/p}
           \ (\text{or } \max |g| \text{ for } p = \infty),\qquad
           g \leftarrow g \cdot \min\Bigl(1, \frac{\text{max\_norm}}{N + 10^{-6}}\Bigr)

The gradients change in place; the total norm :math:`N` (before clipping) is returned.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from refvit.autograd.tensor import Tensor


def clip_grad_norm_(params, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the ``.grad`` of ``params`` so their joint ``norm_type``-norm is at most ``max_norm``.

    ``params``: a Parameter or an iterable of them (those without a gradient are
    ignored). Returns the total norm as a Python float (``0.0`` when no gradient).
    With ``error_if_nonfinite`` a nan/inf total norm raises ``RuntimeError``.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not max_norm >= 0:
        raise ValueError(f"clip_grad_norm_: 'max_norm' must be a number >= 0; got {max_norm!r}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: 'norm_type' must be > 0 or inf; got {norm_type!r}")
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    else:
        per_tensor = [float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for g in grads]
        total = math.fsum(per_tensor) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total}; "
                           "pass error_if_nonfinite=False to clip anyway")
    coefficient = min(1.0, float(max_norm) / (total + 1e-6))
    for g in grads:
        g *= coefficient
    return total
