r"""The logits of 1-D neighbourhood attention: the first half of NATTEN's split pair
(``na1d_qk`` / ``natten1dqkrpb`` up to NATTEN 0.17), ``na1d_av`` is the second.

Shapes: ``q, k (B, heads, n, d)``, ``rpb (heads, 2k-1)`` or ``None`` -> ``logits (B, heads, n, k)``.

Query ``i`` sees the keys ``N(i)_t`` of :mod:`refvit.ops.na1d` (the window rule of
:mod:`refvit.ops._neighborhood`), bias index ``b(i, t) = (N(i)_t - i)/d + k - 1``:

.. math::  a_{it} = \mathrm{scale}\; q_i\cdot k_{N(i)_t} + \mathrm{rpb}_{b(i,t)}

and :math:`a_{it} = -\infty` for a slot past the end of a causal window. ``scale=None`` means
``d ** -0.5`` as in :mod:`refvit.ops.na1d` (NATTEN's ``qk`` does not scale: ``scale=1.0``), and
``na1d_av(softmax(a), v)`` is ``na1d(q, k, v)`` for the same arguments.

Backward, with :math:`\bar a_{it} = \partial L/\partial a_{it}` (0 on empty slots):

.. math::  \frac{\partial L}{\partial q_i} = \mathrm{scale}\sum_t \bar a_{it}\, k_{N(i)_t}, \quad
           \frac{\partial L}{\partial k_j} = \mathrm{scale}\!\!\sum_{(i,t):\,N(i)_t = j}\!\! \bar a_{it}\, q_i, \quad
           \frac{\partial L}{\partial \mathrm{rpb}_{h,r}} = \!\!\sum_{b,i,t:\; b(i,t) = r}\!\! \bar a_{it}
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops._neighborhood import Options, axis_windows
from refvit.ops.na2d_qk import check_qk_arguments

OP = "na1d_qk"
DIFFERENTIABLE = ("q", "k", "rpb")
AXIS_NAMES = ("length",)


class Cache(NamedTuple):
    q: object
    k: object
    rpb: object
    out: object
    options: Options
    backend: str


def forward(q, k, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """``na1d_qk(q, k, kernel_size, ...)`` -> ``(logits, cache)``; see the module docstring for the math.

    Window arguments as in :func:`refvit.ops.na1d.forward`; ``scale=None`` means ``d ** -0.5``.
    """
    backend = dispatch.resolve(OP, backend)
    q, k, rpb, options = check_qk_arguments(OP, AXIS_NAMES, q, k, kernel_size, dilation, stride, is_causal,
                                            rpb, scale, backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (q, k, rpb, options))
    return out, Cache(q, k, rpb, out, options, backend)


def backward(dout, cache):
    """``dout (B, heads, n, k)`` -> ``(dq, dk, drpb)``; ``drpb`` is ``None`` when ``rpb`` was."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    args = (dout, cache.q, cache.k, cache.rpb, cache.options)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, args)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    q, k = (rng.standard_normal((1, 2, 9, 2)) for _ in range(2))
    rpb = rng.standard_normal((2, 5))
    return (q, k, 3), {"dilation": 2, "rpb": rpb, "scale": 0.5}


def _windows(length, options):
    return axis_windows(length, options.kernel_size[0], options.dilation[0], options.stride[0],
                        options.is_causal[0])


def _forward_numpy(q, k, rpb, options):
    windows = _windows(q.shape[2], options)
    logits = options.scale * np.einsum("bhic,bhitc->bhit", q, k[:, :, windows.keys])
    if rpb is not None:
        logits = logits + rpb[:, windows.bias_index]               # (heads, n, k) broadcast over B
    return np.where(windows.valid, logits, -np.inf).astype(q.dtype)


def _backward_numpy(dout, q, k, rpb, options):
    windows = _windows(q.shape[2], options)
    keys, valid = windows.keys, windows.valid
    dlogits = np.where(valid, dout, 0.0)
    dq = options.scale * np.einsum("bhit,bhitc->bhic", dlogits, k[:, :, keys])
    # dk: scatter-add each (query, slot) contribution onto its key.
    dk = np.zeros_like(k)
    per_slot_q = options.scale * dlogits[..., None] * q[:, :, :, None, :]
    np.add.at(dk, (slice(None), slice(None), keys[valid]), per_slot_q[:, :, valid])
    drpb = None
    if rpb is not None:
        drpb = np.zeros_like(rpb)
        np.add.at(drpb, (slice(None), windows.bias_index[valid]), dlogits[:, :, valid].sum(axis=0))
    return dq.astype(q.dtype), dk, drpb
