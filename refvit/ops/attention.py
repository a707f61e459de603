r"""Scaled dot-product attention with an optional additive bias.

Shapes: ``q (B, h, Nq, d)``, ``k (B, h, Nk, d)``, ``v (B, h, Nk, dv)``, ``bias`` broadcastable
to ``(B, h, Nq, Nk)`` (e.g. ``(h, Nq, Nk)``, ``(Nq, Nk)``, a ``(B, 1, 1, Nk)`` mask holding
``-inf``) -> ``out (B, h, Nq, dv)``. Queries and keys may differ in number (cross-attention).

Forward, per batch and head, with ``scale`` defaulting to :math:`d^{-1/2}`:

.. math::  S = \text{scale}\; Q K^\top + \text{bias}, \qquad
           P_{ij} = \frac{e^{S_{ij} - m_i}}{\sum_{j'} e^{S_{ij'} - m_i}},\; m_i = \max_j S_{ij}, \qquad
           O = P V

Backward, with :math:`G = \partial L / \partial O`:

.. math::  \frac{\partial L}{\partial P} = G V^\top, \qquad
           \frac{\partial L}{\partial S} = P \odot \Bigl(\frac{\partial L}{\partial P}
               - \operatorname{rowsum}\bigl(\tfrac{\partial L}{\partial P} \odot P\bigr)\Bigr)

.. math::  \frac{\partial L}{\partial Q} = \text{scale}\,\frac{\partial L}{\partial S} K, \quad
           \frac{\partial L}{\partial K} = \text{scale}\,\frac{\partial L}{\partial S}^{\!\top} Q, \quad
           \frac{\partial L}{\partial V} = P^\top G, \quad
           \frac{\partial L}{\partial\,\text{bias}} = \frac{\partial L}{\partial S}
               \text{ summed over the axes that bias was broadcast along.}

A row whose logits are all ``-inf`` (fully masked) gives NaN, as PyTorch's softmax does.
The ``numpy`` backend keeps ``P`` for the backward pass; the ``cpu`` and ``cuda`` kernels keep
only the per-row log-sum-exp and recompute ``P`` from ``q``, ``k`` and ``bias``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_same_dtype, check_scale, check_shape, describe, fail
from refvit.ops import _dispatch as dispatch

OP = "attention"
DIFFERENTIABLE = ("q", "k", "v", "bias")


class Cache(NamedTuple):
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    bias: np.ndarray | None
    scale: float
    out: np.ndarray    # the output, for the shape and dtype of ``dout``
    saved: np.ndarray  # the reference's P (B, h, Nq, Nk), or the kernels' log sum_j exp(S_ij), float64 (B, h, Nq)
    backend: str


def forward(q, k, v, bias=None, scale=None, backend=None):
    """``attention(q, k, v, bias, scale)`` -> ``(out (B, h, Nq, dv), cache)``; math in the module docstring."""
    backend = dispatch.resolve(OP, backend)
    q, k, v, bias = _check_inputs(q, k, v, bias, backend)
    scale = check_scale(OP, scale, q.shape[3])
    out, saved = dispatch.run(OP, backend, "forward", _forward_numpy, (q, k, v, bias, scale))
    return out, Cache(q, k, v, bias, scale, out, saved, backend)


def backward(dout, cache):
    """``dout (B, h, Nq, dv)`` -> ``(dq, dk, dv, dbias)``; ``dbias`` is None when ``bias`` was None."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy,
                        (dout, cache.q, cache.k, cache.v, cache.bias, cache.scale, cache.saved))


def example(rng):
    """Small float64 inputs for ``refvit check``: cross-attention with a per-head bias."""
    q = rng.standard_normal((2, 2, 3, 4))
    k = rng.standard_normal((2, 2, 5, 4))
    v = rng.standard_normal((2, 2, 5, 3))
    bias = rng.standard_normal((2, 3, 5))
    return (q, k, v), {"bias": bias}


def _check_inputs(q, k, v, bias, backend):
    q = check_array(OP, "q", q, backend, ndim=4)
    k = check_array(OP, "k", k, backend, ndim=4)
    v = check_array(OP, "v", v, backend, ndim=4)
    if bias is not None:
        bias = check_array(OP, "bias", bias, backend)
    check_same_dtype(OP, q=q, k=k, v=v, bias=bias)
    batch, heads, n_queries, head_dim = q.shape
    if head_dim < 1:
        fail(OP, "q", "of shape (B, h, Nq, d) with d >= 1", f"shape {tuple(q.shape)}")
    check_shape(OP, "k", k, (batch, heads, None, head_dim))
    n_keys = k.shape[2]
    if n_keys < 1:
        fail(OP, "k", "of shape (B, h, Nk, d) with Nk >= 1", f"shape {tuple(k.shape)}")
    check_shape(OP, "v", v, (batch, heads, n_keys, None))
    if bias is not None:
        logits_shape = (batch, heads, n_queries, n_keys)
        if not _broadcasts_to(tuple(bias.shape), logits_shape):
            fail(OP, "bias", f"broadcastable to (B, h, Nq, Nk) = {logits_shape}", describe(bias))
    return q, k, v, bias


def _broadcasts_to(shape, target):
    """True when an array of ``shape`` broadcasts to exactly ``target``."""
    if len(shape) > len(target):
        return False
    trailing = target[len(target) - len(shape):]
    return all(s == t or s == 1 for s, t in zip(shape, trailing))


def _forward_numpy(q, k, v, bias, scale):
    logits = scale * (q @ np.swapaxes(k, -1, -2))
    if bias is not None:
        logits = logits + bias
    probs = _softmax_last_axis(logits)
    return probs @ v, probs


def _softmax_last_axis(logits):
    """Stable softmax; a row of only ``-inf`` becomes NaN (``-inf - -inf``)."""
    row_max = np.max(logits, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        exps = np.exp(logits - row_max)
    return exps / np.sum(exps, axis=-1, keepdims=True)


def _backward_numpy(dout, q, k, v, bias, scale, probs):
    dprobs = dout @ np.swapaxes(v, -1, -2)
    dlogits = probs * (dprobs - np.sum(dprobs * probs, axis=-1, keepdims=True))
    dq = scale * (dlogits @ k)
    dk = scale * (np.swapaxes(dlogits, -1, -2) @ q)
    dv = np.swapaxes(probs, -1, -2) @ dout
    dbias = None if bias is None else _sum_to_shape(dlogits, bias.shape)
    return dq, dk, dv, dbias


def _sum_to_shape(full, shape):
    """Sum ``full`` over the axes along which an array of ``shape`` was broadcast to ``full.shape``."""
    shape = tuple(shape)
    reduced = full.sum(axis=tuple(range(full.ndim - len(shape))))
    axes = tuple(axis for axis, size in enumerate(shape) if size == 1 and reduced.shape[axis] != 1)
    return reduced.sum(axis=axes, keepdims=True) if axes else reduced
