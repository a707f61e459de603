r"""2-D neighbourhood attention (NA), with dilation (DiNA), stride, causal windows and a relative
positional bias.

Shapes: ``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or ``None``
-> ``out (B, heads, H, W, d)``.

The window of query ``(x, y)`` is the Cartesian product of the row window ``N_h(x)`` and the
column window ``N_w(y)`` (the window rule of :mod:`refvit.ops._neighborhood`, applied per axis
with that axis' kernel, dilation, stride and causal flag); the bias of slot ``(u, w)`` sits at
``(b_h(x, u), b_w(y, w))`` with ``b(i, t) = (N(i)_t - i)/d + k - 1`` per axis:

.. math::  a_{xy,uw} = \mathrm{scale}\; q_{xy}\cdot k_{N_h(x)_u N_w(y)_w}
           + \mathrm{rpb}_{b_h(x,u),\, b_w(y,w)}, \qquad
           p_{xy,uw} = \operatorname{softmax}_{(u,w)}\, a_{xy,uw}, \qquad
           o_{xy} = \sum_{u,w} p_{xy,uw}\, v_{N_h(x)_u N_w(y)_w}

Backward, with :math:`g_{xy} = \partial L/\partial o_{xy}` and :math:`\bar a_{xy,uw} = p_{xy,uw}\,(\delta_{xy,uw} - \sum_{u',w'} p_{xy,u'w'}\delta_{xy,u'w'})`,
:math:`\delta_{xy,uw} = g_{xy}\cdot v_{N_h(x)_u N_w(y)_w}`:

.. math::  \frac{\partial L}{\partial q_{xy}} = \mathrm{scale}\sum_{u,w} \bar a_{xy,uw}\, k_{N_h(x)_u N_w(y)_w}, \quad
           \frac{\partial L}{\partial k_{j}} = \mathrm{scale}\!\!\sum_{(xy,uw)\to j}\!\! \bar a_{xy,uw}\, q_{xy}, \quad
           \frac{\partial L}{\partial v_{j}} = \!\!\sum_{(xy,uw)\to j}\!\! p_{xy,uw}\, g_{xy}

and :math:`\partial L/\partial \mathrm{rpb}_{h,r,c}` sums :math:`\bar a` over every batch, query and slot
whose bias index is :math:`(r, c)`. ``(xy, uw) -> j`` reads "slot ``(u, w)`` of query ``(x, y)`` holds key ``j``".
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops._neighborhood import Options, check_arguments, windows_2d

OP = "na2d"
DIFFERENTIABLE = ("q", "k", "v", "rpb")
AXIS_NAMES = ("height", "width")


class Cache(NamedTuple):
    q: object
    k: object
    v: object
    rpb: object
    out: object
    attn: object  # softmax weights (B, heads, H, W, kh*kw), slot u*kw + w; on the device for cuda
    options: Options
    backend: str


def forward(q, k, v, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """``na2d(q, k, v, kernel_size, ...)`` -> ``(out, cache)``; see the module docstring for the math.

    ``kernel_size`` (odd), ``dilation``, ``stride`` (``<= kernel_size``) and ``is_causal`` are one value
    for both axes or a pair ``(height, width)``; ``kernel_size * dilation <= H`` (and ``W``) per axis.
    ``scale=None`` means ``d ** -0.5``; ``scale=0.0`` means zero.
    """
    backend = dispatch.resolve(OP, backend)
    q, k, v, rpb, options = check_arguments(OP, AXIS_NAMES, q, k, v, kernel_size, dilation, stride,
                                            is_causal, rpb, scale, backend)
    out, attn = dispatch.run(OP, backend, "forward", _forward_numpy, (q, k, v, rpb, options))
    return out, Cache(q, k, v, rpb, out, attn, options, backend)


def backward(dout, cache):
    """``dout (B, heads, H, W, d)`` -> ``(dq, dk, dv, drpb)``; ``drpb`` is ``None`` when ``rpb`` was."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    args = (dout, cache.q, cache.k, cache.v, cache.rpb, cache.out, cache.attn, cache.options)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, args)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    q, k, v = (rng.standard_normal((1, 1, 5, 6, 2)) for _ in range(3))
    rpb = rng.standard_normal((1, 5, 5))
    return (q, k, v, 3), {"dilation": (1, 2), "stride": (2, 1), "rpb": rpb}


def _forward_numpy(q, k, v, rpb, options):
    hood = windows_2d(q.shape[2], q.shape[3], options)
    keys = k[:, :, hood.key_row, hood.key_col]                     # (B, heads, H, W, kh, kw, d)
    logits = options.scale * np.einsum("bhxyc,bhxyuwc->bhxyuw", q, keys)
    if rpb is not None:
        logits = logits + rpb[:, hood.bias_row, hood.bias_col]     # (heads, H, W, kh, kw)
    logits = np.where(hood.valid, logits, -np.inf)
    shifted = logits - logits.max(axis=(-2, -1), keepdims=True)
    weights = np.where(hood.valid, np.exp(shifted), 0.0)
    attn = weights / weights.sum(axis=(-2, -1), keepdims=True)
    out = np.einsum("bhxyuw,bhxyuwc->bhxyc", attn, v[:, :, hood.key_row, hood.key_col])
    kernel_h, kernel_w = options.kernel_size
    return out, attn.reshape(attn.shape[:4] + (kernel_h * kernel_w,))  # slot u*kw + w, as on every backend


def _backward_numpy(dout, q, k, v, rpb, out, attn, options):
    hood = windows_2d(q.shape[2], q.shape[3], options)
    valid = hood.valid
    attn = attn.reshape(attn.shape[:4] + tuple(options.kernel_size))
    dattn = np.einsum("bhxyc,bhxyuwc->bhxyuw", dout, v[:, :, hood.key_row, hood.key_col])
    dlogits = attn * (dattn - np.sum(attn * dattn, axis=(-2, -1), keepdims=True))
    dlogits = np.where(valid, dlogits, 0.0)
    dq = options.scale * np.einsum("bhxyuw,bhxyuwc->bhxyc", dlogits, k[:, :, hood.key_row, hood.key_col])
    # dk, dv: scatter-add each (query, slot) contribution onto its key.
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    target = (slice(None), slice(None), hood.key_row[valid], hood.key_col[valid])
    per_slot_q = dlogits[..., None] * q[:, :, :, :, None, None, :]   # (B, heads, H, W, kh, kw, d)
    per_slot_g = attn[..., None] * dout[:, :, :, :, None, None, :]
    np.add.at(dk, target, options.scale * per_slot_q[:, :, valid])
    np.add.at(dv, target, per_slot_g[:, :, valid])
    drpb = None
    if rpb is not None:
        drpb = np.zeros_like(rpb)
        np.add.at(drpb, (slice(None), hood.bias_row[valid], hood.bias_col[valid]), dlogits[:, :, valid].sum(axis=0))
    return dq, dk, dv, drpb
