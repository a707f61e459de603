r"""1-D neighbourhood attention (NA), with dilation (DiNA), stride, causal windows and a relative
positional bias.

Shapes: ``q, k, v (B, heads, n, d)``, ``rpb (heads, 2k-1)`` or ``None`` -> ``out (B, heads, n, d)``.

Each query ``i`` attends to the ``k`` keys ``j = N(i)_t`` of its window (the window rule of
:mod:`refvit.ops._neighborhood`; causal windows may hold fewer), with bias index
``b(i, t) = (N(i)_t - i)/d + k - 1``:

.. math::  a_{it} = \mathrm{scale}\; q_i\cdot k_{N(i)_t} + \mathrm{rpb}_{b(i,t)}, \qquad
           p_{it} = \frac{e^{a_{it}}}{\sum_{t'} e^{a_{it'}}}, \qquad
           o_i = \sum_t p_{it}\, v_{N(i)_t}

Backward, with :math:`g_i = \partial L/\partial o_i`:

.. math::  \delta_{it} = g_i\cdot v_{N(i)_t}, \qquad
           \bar a_{it} = p_{it}\,\Bigl(\delta_{it} - \sum_{t'} p_{it'}\delta_{it'}\Bigr)

.. math::  \frac{\partial L}{\partial q_i} = \mathrm{scale}\sum_t \bar a_{it}\, k_{N(i)_t}, \quad
           \frac{\partial L}{\partial k_j} = \mathrm{scale}\!\!\sum_{(i,t):\,N(i)_t = j}\!\! \bar a_{it}\, q_i, \quad
           \frac{\partial L}{\partial v_j} = \!\!\sum_{(i,t):\,N(i)_t = j}\!\! p_{it}\, g_i, \quad
           \frac{\partial L}{\partial \mathrm{rpb}_{h,r}} = \!\!\sum_{b,i,t:\; b(i,t) = r}\!\! \bar a_{it}

(the softmax backward; :math:`\sum_t p_{it}\delta_{it} = g_i\cdot o_i`, which the kernels use.)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops._neighborhood import Options, axis_windows, check_arguments

OP = "na1d"
DIFFERENTIABLE = ("q", "k", "v", "rpb")
AXIS_NAMES = ("length",)


class Cache(NamedTuple):
    q: object
    k: object
    v: object
    rpb: object
    out: object
    attn: object  # softmax weights (B, heads, n, k); on the device for cuda
    options: Options
    backend: str


def forward(q, k, v, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """``na1d(q, k, v, kernel_size, ...)`` -> ``(out, cache)``; see the module docstring for the math.

    ``kernel_size`` (odd), ``dilation``, ``stride`` (``<= kernel_size``) are ints, ``is_causal`` a bool
    (or one-element sequences); ``kernel_size * dilation <= n``. ``scale=None`` means ``d ** -0.5``.
    """
    backend = dispatch.resolve(OP, backend)
    q, k, v, rpb, options = check_arguments(OP, AXIS_NAMES, q, k, v, kernel_size, dilation, stride,
                                            is_causal, rpb, scale, backend)
    out, attn = dispatch.run(OP, backend, "forward", _forward_numpy, (q, k, v, rpb, options))
    return out, Cache(q, k, v, rpb, out, attn, options, backend)


def backward(dout, cache):
    """``dout (B, heads, n, d)`` -> ``(dq, dk, dv, drpb)``; ``drpb`` is ``None`` when ``rpb`` was."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    args = (dout, cache.q, cache.k, cache.v, cache.rpb, cache.out, cache.attn, cache.options)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, args)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    q, k, v = (rng.standard_normal((1, 2, 9, 2)) for _ in range(3))
    rpb = rng.standard_normal((2, 5))
    return (q, k, v, 3), {"dilation": 2, "rpb": rpb}


def _windows(length, options):
    return axis_windows(length, options.kernel_size[0], options.dilation[0], options.stride[0],
                        options.is_causal[0])


def _forward_numpy(q, k, v, rpb, options):
    windows = _windows(q.shape[2], options)
    keys, valid = windows.keys, windows.valid                      # (n, k)
    logits = options.scale * np.einsum("bhic,bhitc->bhit", q, k[:, :, keys])
    if rpb is not None:
        logits = logits + rpb[:, windows.bias_index]               # (heads, n, k) broadcast over B
    logits = np.where(valid, logits, -np.inf)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.where(valid, np.exp(shifted), 0.0).astype(q.dtype)
    attn = weights / weights.sum(axis=-1, keepdims=True)
    out = np.einsum("bhit,bhitc->bhic", attn, v[:, :, keys])
    return out, attn


def _backward_numpy(dout, q, k, v, rpb, out, attn, options):
    windows = _windows(q.shape[2], options)
    keys, valid = windows.keys, windows.valid
    dattn = np.einsum("bhic,bhitc->bhit", dout, v[:, :, keys])
    dlogits = attn * (dattn - np.sum(attn * dattn, axis=-1, keepdims=True))
    dlogits = np.where(valid, dlogits, 0.0).astype(q.dtype)
    dq = options.scale * np.einsum("bhit,bhitc->bhic", dlogits, k[:, :, keys])
    # dk, dv: scatter-add each (query, slot) contribution onto its key.
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    everything = (slice(None), slice(None))
    np.add.at(dk, everything + (keys[valid],), options.scale * (dlogits[..., None] * q[:, :, :, None, :])[:, :, valid])
    np.add.at(dv, everything + (keys[valid],), (attn[..., None] * dout[:, :, :, None, :])[:, :, valid])
    drpb = None
    if rpb is not None:
        drpb = np.zeros_like(rpb)
        np.add.at(drpb, (slice(None), windows.bias_index[valid]), dlogits[:, :, valid].sum(axis=0))
    return dq, dk, dv, drpb
