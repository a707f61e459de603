r"""The logits of 2-D neighbourhood attention: the first half of NATTEN's split pair
(``na2d_qk`` / ``natten2dqkrpb`` up to NATTEN 0.17), ``na2d_av`` is the second.

Shapes: ``q, k (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or ``None``
-> ``logits (B, heads, H, W, kh*kw)``, slot ``u*kw + w`` for row slot ``u`` and column slot ``w``
(the layout of ``Cache.attn`` of :mod:`refvit.ops.na2d`).

The window of query ``(x, y)`` is the one of :mod:`refvit.ops.na2d` (the rule of
:mod:`refvit.ops._neighborhood` per axis, with dilation, stride and causal windows):

.. math::  a_{xy,uw} = \mathrm{scale}\; q_{xy}\cdot k_{N_h(x)_u N_w(y)_w} + \mathrm{rpb}_{b_h(x,u),\, b_w(y,w)}

and :math:`a_{xy,uw} = -\infty` for a slot outside a causal window (so that a softmax gives it
weight 0). ``scale=None`` means ``d ** -0.5``, as in :mod:`refvit.ops.na2d`, so that with
``p = softmax(a)`` over the slots ``na2d_av(p, v)`` is ``na2d(q, k, v)`` for the same arguments. NATTEN's
``qk`` does not scale (NAT/DiNAT multiply ``q`` by ``d ** -0.5`` before the call): its equivalent is
``na2d_qk(q, k, ..., scale=1.0)``.

Backward, with :math:`\bar a_{xy,uw} = \partial L/\partial a_{xy,uw}` (0 on empty slots):

.. math::  \frac{\partial L}{\partial q_{xy}} = \mathrm{scale}\sum_{u,w} \bar a_{xy,uw}\, k_{N_h(x)_u N_w(y)_w}, \quad
           \frac{\partial L}{\partial k_{j}} = \mathrm{scale}\!\!\sum_{(xy,uw)\to j}\!\! \bar a_{xy,uw}\, q_{xy}, \quad
           \frac{\partial L}{\partial \mathrm{rpb}_{h,r,c}} = \sum_{b}\sum_{(xy,uw):\,(b_h, b_w) = (r,c)} \bar a_{xy,uw}

``(xy, uw) -> j`` reads "slot ``(u, w)`` of query ``(x, y)`` holds key ``j``".
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops._neighborhood import Options, check_arguments, windows_2d

OP = "na2d_qk"
DIFFERENTIABLE = ("q", "k", "rpb")
AXIS_NAMES = ("height", "width")


class Cache(NamedTuple):
    q: object
    k: object
    rpb: object
    out: object
    options: Options
    backend: str


def check_qk_arguments(op, axis_names, q, k, kernel_size, dilation, stride, is_causal, rpb, scale, backend):
    """The checks of :func:`refvit.ops._neighborhood.check_arguments` for ``q`` and ``k`` (``k`` stands in
    for ``v``) -> ``(q, k, rpb, Options)``."""
    q, k, _, rpb, options = check_arguments(op, axis_names, q, k, k, kernel_size, dilation, stride, is_causal,
                                            rpb, scale, backend)
    return q, k, rpb, options


def forward(q, k, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """``na2d_qk(q, k, kernel_size, ...)`` -> ``(logits, cache)``; see the module docstring for the math.

    ``kernel_size``, ``dilation``, ``stride``, ``is_causal`` as in :func:`refvit.ops.na2d.forward`;
    ``scale=None`` means ``d ** -0.5`` (NATTEN's unscaled ``qk`` is ``scale=1.0``).
    """
    backend = dispatch.resolve(OP, backend)
    q, k, rpb, options = check_qk_arguments(OP, AXIS_NAMES, q, k, kernel_size, dilation, stride, is_causal,
                                            rpb, scale, backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (q, k, rpb, options))
    return out, Cache(q, k, rpb, out, options, backend)


def backward(dout, cache):
    """``dout (B, heads, H, W, kh*kw)`` -> ``(dq, dk, drpb)``; ``drpb`` is ``None`` when ``rpb`` was."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    args = (dout, cache.q, cache.k, cache.rpb, cache.options)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, args)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    q, k = (rng.standard_normal((1, 2, 5, 6, 2)) for _ in range(2))
    rpb = rng.standard_normal((2, 5, 5))
    return (q, k, 3), {"dilation": (1, 2), "stride": (2, 1), "rpb": rpb, "scale": 0.5}


def _forward_numpy(q, k, rpb, options):
    hood = windows_2d(q.shape[2], q.shape[3], options)
    keys = k[:, :, hood.key_row, hood.key_col]                     # (B, heads, H, W, kh, kw, d)
    logits = options.scale * np.einsum("bhxyc,bhxyuwc->bhxyuw", q, keys)
    if rpb is not None:
        logits = logits + rpb[:, hood.bias_row, hood.bias_col]     # (heads, H, W, kh, kw)
    logits = np.where(hood.valid, logits, -np.inf).astype(q.dtype)
    return logits.reshape(logits.shape[:4] + (int(np.prod(options.kernel_size)),))  # slot u*kw + w


def _backward_numpy(dout, q, k, rpb, options):
    hood = windows_2d(q.shape[2], q.shape[3], options)
    valid = hood.valid
    dlogits = np.where(valid, dout.reshape(dout.shape[:4] + tuple(options.kernel_size)), 0.0)
    dq = options.scale * np.einsum("bhxyuw,bhxyuwc->bhxyc", dlogits, k[:, :, hood.key_row, hood.key_col])
    # dk: scatter-add each (query, slot) contribution onto its key.
    dk = np.zeros_like(k)
    per_slot_q = dlogits[..., None] * q[:, :, :, :, None, None, :]  # (B, heads, H, W, kh, kw, d)
    np.add.at(dk, (slice(None), slice(None), hood.key_row[valid], hood.key_col[valid]),
              options.scale * per_slot_q[:, :, valid])
    drpb = None
    if rpb is not None:
        drpb = np.zeros_like(rpb)
        np.add.at(drpb, (slice(None), hood.bias_row[valid], hood.bias_col[valid]), dlogits[:, :, valid].sum(axis=0))
    return dq.astype(q.dtype), dk, drpb
