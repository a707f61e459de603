r"""Mean cross-entropy of logits against class indices, with label smoothing, as
``torch.nn.functional.cross_entropy(logits, target, label_smoothing=eps)``.

Shapes: ``logits (B, K)`` float, ``target (B,)`` integer class indices in ``[0, K)``
(not differentiable) -> ``loss ()``, a 0-d array of the logits' dtype.

Forward, per row :math:`z \in \mathbb{R}^K` with target :math:`t`, a stable log-softmax
(:math:`m = \max_k z_k`) and the smoothed target distribution :math:`q`:

.. math::  \log p_k = z_k - m - \log\sum_j e^{z_j - m},\qquad
           q_k = (1 - \varepsilon)\,[k = t] + \frac{\varepsilon}{K}

.. math::  \ell = -\sum_k q_k \log p_k = -(1-\varepsilon)\log p_t - \frac{\varepsilon}{K}\sum_k \log p_k,
           \qquad L = \frac1B\sum_{\text{rows}} \ell

(with :math:`\varepsilon = 0` the smoothing term is left out, so a :math:`-\infty` logit of a
non-target class costs nothing, as in PyTorch).

Backward, with the upstream gradient :math:`\bar L` (a scalar) and
:math:`\partial \ell/\partial z_k = p_k \sum_j q_j - q_k = p_k - q_k`:

.. math::  \frac{\partial L}{\partial z_{bk}} = \frac{\bar L}{B}\,(p_{bk} - q_{bk})
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, describe, fail, is_device_array
from refvit.ops import _dispatch as dispatch

OP = "cross_entropy"
DIFFERENTIABLE = ("logits",)


class _Like(NamedTuple):
    shape: tuple
    dtype: np.dtype


class Cache(NamedTuple):
    probs: np.ndarray  # softmax of the logits, (B, K)
    target: np.ndarray  # int64 class indices, (B,)
    label_smoothing: float
    loss: _Like  # the output's shape () and dtype, for checking dout
    backend: str


def forward(logits, target, label_smoothing=0.0, backend=None):
    """``cross_entropy(logits, target, label_smoothing)`` -> ``(loss, cache)``; see the module docstring."""
    backend = dispatch.resolve(OP, backend)
    logits = check_array(OP, "logits", logits, backend, ndim=2)
    batch, classes = tuple(logits.shape)
    if batch == 0 or classes == 0:
        fail(OP, "logits", "of shape (B, K) with B >= 1 and K >= 1", f"shape {(batch, classes)}")
    target = _check_target(target, batch, classes, backend)
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, numbers.Real):
        fail(OP, "label_smoothing", "a real number in [0, 1]", describe(label_smoothing), TypeError)
    if not 0.0 <= label_smoothing <= 1.0:
        fail(OP, "label_smoothing", "a real number in [0, 1]", label_smoothing)
    label_smoothing = float(label_smoothing)
    loss, probs = dispatch.run(OP, backend, "forward", _forward_numpy, (logits, target, label_smoothing))
    return loss, Cache(probs, target, label_smoothing, _Like((), np.dtype(logits.dtype)), backend)


def backward(dout, cache):
    """``dout ()`` (a 0-d array, or a Python number) -> ``(dlogits (B, K),)``."""
    dispatch.check_cache(OP, cache, Cache)
    if isinstance(dout, numbers.Real) and not isinstance(dout, (bool, np.bool_, np.ndarray)):
        dout = np.asarray(dout, dtype=cache.loss.dtype)
    dout = check_grad(OP, dout, cache.loss)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy,
                         (dout, cache.probs, cache.target, cache.label_smoothing)),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.uniform(-3.0, 3.0, (4, 5)), rng.integers(0, 5, 4)), {"label_smoothing": 0.1}


def _check_target(target, batch, classes, backend):
    """Integer class indices of shape (B,), all in [0, K); returned as a host int64 array."""
    if is_device_array(target) and backend == "cuda":
        target = target.copy_to_host()
    elif isinstance(target, (list, tuple)):
        target = np.asarray(target)
    if not isinstance(target, np.ndarray):
        fail(OP, "target", "an integer NumPy array of class indices", describe(target), TypeError)
    if target.dtype.kind not in "iu":
        fail(OP, "target", "an integer array of class indices", describe(target), TypeError)
    if tuple(target.shape) != (batch,):
        fail(OP, "target", f"of shape (B,) = ({batch},), one class index per row of 'logits'",
             f"shape {tuple(target.shape)}")
    if target.size and (target.min() < 0 or target.max() >= classes):
        fail(OP, "target", f"class indices in [0, {classes})",
             f"values from {int(target.min())} to {int(target.max())}")
    return np.ascontiguousarray(target, dtype=np.int64)


def _forward_numpy(logits, target, label_smoothing):
    batch, classes = logits.shape
    with np.errstate(invalid="ignore"):
        shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    row_loss = -(1.0 - label_smoothing) * log_probs[np.arange(batch), target]
    if label_smoothing > 0.0:
        row_loss = row_loss - label_smoothing * np.mean(log_probs, axis=1)
    loss = np.asarray(np.mean(row_loss), dtype=logits.dtype)
    return loss, np.exp(log_probs)


def _backward_numpy(dout, probs, target, label_smoothing):
    batch, classes = probs.shape
    smoothed = np.full(probs.shape, label_smoothing / classes, dtype=probs.dtype)
    smoothed[np.arange(batch), target] += 1.0 - label_smoothing
    return (dout / batch) * (probs - smoothed)
