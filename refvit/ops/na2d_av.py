r"""The weighted sum of 2-D neighbourhood attention: the second half of NATTEN's split pair
(``na2d_av`` / ``natten2dav`` up to NATTEN 0.17), after ``na2d_qk`` and a softmax.

Shapes: ``attn (B, heads, H, W, kh*kw)`` (slot ``u*kw + w``, the layout of ``na2d_qk``'s logits),
``v (B, heads, H, W, d)`` -> ``out (B, heads, H, W, d)``.

The window of query ``(x, y)`` is the one of :mod:`refvit.ops.na2d`; slots outside a causal window
hold no key, and their weights are not read (their gradient is 0):

.. math::  o_{xy} = \sum_{u,w} p_{xy,uw}\, v_{N_h(x)_u N_w(y)_w}

The weights need not sum to 1. Backward, with :math:`g_{xy} = \partial L/\partial o_{xy}`:

.. math::  \frac{\partial L}{\partial p_{xy,uw}} = g_{xy}\cdot v_{N_h(x)_u N_w(y)_w}, \qquad
           \frac{\partial L}{\partial v_{j}} = \!\!\sum_{(xy,uw)\to j}\!\! p_{xy,uw}\, g_{xy}

``(xy, uw) -> j`` reads "slot ``(u, w)`` of query ``(x, y)`` holds key ``j``".
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_same_dtype, check_shape, fail
from refvit.ops import _dispatch as dispatch
from refvit.ops._neighborhood import Options, check_arguments, windows_2d

OP = "na2d_av"
DIFFERENTIABLE = ("attn", "v")
AXIS_NAMES = ("height", "width")


class Cache(NamedTuple):
    attn: object
    v: object
    out: object
    options: Options
    backend: str


def check_av_arguments(op, axis_names, attn, v, kernel_size, dilation, stride, is_causal, backend):
    """``attn`` first (rank, dtype), then the window checks of
    :func:`refvit.ops._neighborhood.check_arguments` on ``v``, then ``attn``'s shape
    ``v.shape[:-1] + (prod(kernel_size),)`` -> ``(attn, v, Options)`` (``scale`` 1, unused)."""
    attn = check_array(op, "attn", attn, backend, ndim=len(axis_names) + 3)
    v = check_array(op, "v", v, backend, ndim=len(axis_names) + 3)
    check_same_dtype(op, attn=attn, v=v)
    if v.shape[-1] < 1:
        fail(op, "v", "an array with head_dim >= 1", f"shape {tuple(v.shape)}")
    _, _, v, _, options = check_arguments(op, axis_names, v, v, v, kernel_size, dilation, stride, is_causal,
                                          None, 1.0, backend)
    check_shape(op, "attn", attn, tuple(v.shape[:-1]) + (int(np.prod(options.kernel_size)),))
    return attn, v, options


def forward(attn, v, kernel_size, dilation=1, stride=1, is_causal=False, backend=None):
    """``na2d_av(attn, v, kernel_size, ...)`` -> ``(out, cache)``; see the module docstring for the math.

    ``kernel_size``, ``dilation``, ``stride``, ``is_causal`` as in :func:`refvit.ops.na2d.forward`
    (the same as the ``na2d_qk`` call that made the logits).
    """
    backend = dispatch.resolve(OP, backend)
    attn, v, options = check_av_arguments(OP, AXIS_NAMES, attn, v, kernel_size, dilation, stride, is_causal,
                                          backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (attn, v, options))
    return out, Cache(attn, v, out, options, backend)


def backward(dout, cache):
    """``dout (B, heads, H, W, d)`` -> ``(dattn, dv)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.attn, cache.v, cache.options))


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    attn = rng.standard_normal((1, 2, 5, 6, 9))
    v = rng.standard_normal((1, 2, 5, 6, 2))
    return (attn, v, 3), {"dilation": (1, 2), "stride": (2, 1)}


def _forward_numpy(attn, v, options):
    hood = windows_2d(v.shape[2], v.shape[3], options)
    weights = np.where(hood.valid, attn.reshape(attn.shape[:4] + tuple(options.kernel_size)), 0.0)
    return np.einsum("bhxyuw,bhxyuwc->bhxyc", weights, v[:, :, hood.key_row, hood.key_col]).astype(v.dtype)


def _backward_numpy(dout, attn, v, options):
    hood = windows_2d(v.shape[2], v.shape[3], options)
    valid = hood.valid
    weights = np.where(valid, attn.reshape(attn.shape[:4] + tuple(options.kernel_size)), 0.0)
    dattn = np.einsum("bhxyc,bhxyuwc->bhxyuw", dout, v[:, :, hood.key_row, hood.key_col])
    dattn = np.where(valid, dattn, 0.0).astype(attn.dtype).reshape(attn.shape)
    # dv: scatter-add each (query, slot) contribution onto its key.
    dv = np.zeros_like(v)
    per_slot_g = weights[..., None] * dout[:, :, :, :, None, None, :]  # (B, heads, H, W, kh, kw, d)
    np.add.at(dv, (slice(None), slice(None), hood.key_row[valid], hood.key_col[valid]), per_slot_g[:, :, valid])
    return dattn, dv
