r"""The weighted sum of 1-D neighbourhood attention: the second half of NATTEN's split pair
(``na1d_av`` / ``natten1dav`` up to NATTEN 0.17), after ``na1d_qk`` and a softmax.

Shapes: ``attn (B, heads, n, k)``, ``v (B, heads, n, d)`` -> ``out (B, heads, n, d)``.

Query ``i`` sees the keys ``N(i)_t`` of :mod:`refvit.ops.na1d`; slots past the end of a causal
window hold no key, and their weights are not read (their gradient is 0):

.. math::  o_i = \sum_t p_{it}\, v_{N(i)_t}

Backward, with :math:`g_i = \partial L/\partial o_i`:

.. math::  \frac{\partial L}{\partial p_{it}} = g_i\cdot v_{N(i)_t}, \qquad
           \frac{\partial L}{\partial v_j} = \!\!\sum_{(i,t):\,N(i)_t = j}\!\! p_{it}\, g_i
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops._neighborhood import Options, axis_windows
from refvit.ops.na2d_av import check_av_arguments

OP = "na1d_av"
DIFFERENTIABLE = ("attn", "v")
AXIS_NAMES = ("length",)


class Cache(NamedTuple):
    attn: object
    v: object
    out: object
    options: Options
    backend: str


def forward(attn, v, kernel_size, dilation=1, stride=1, is_causal=False, backend=None):
    """``na1d_av(attn, v, kernel_size, ...)`` -> ``(out, cache)``; see the module docstring for the math.

    Window arguments as in :func:`refvit.ops.na1d.forward` (those of the ``na1d_qk`` call).
    """
    backend = dispatch.resolve(OP, backend)
    attn, v, options = check_av_arguments(OP, AXIS_NAMES, attn, v, kernel_size, dilation, stride, is_causal,
                                          backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (attn, v, options))
    return out, Cache(attn, v, out, options, backend)


def backward(dout, cache):
    """``dout (B, heads, n, d)`` -> ``(dattn, dv)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.out)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.attn, cache.v, cache.options))


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    attn = rng.standard_normal((1, 2, 9, 3))
    v = rng.standard_normal((1, 2, 9, 2))
    return (attn, v, 3), {"dilation": 2}


def _windows(length, options):
    return axis_windows(length, options.kernel_size[0], options.dilation[0], options.stride[0],
                        options.is_causal[0])


def _forward_numpy(attn, v, options):
    windows = _windows(v.shape[2], options)
    weights = np.where(windows.valid, attn, 0.0)
    return np.einsum("bhit,bhitc->bhic", weights, v[:, :, windows.keys]).astype(v.dtype)


def _backward_numpy(dout, attn, v, options):
    windows = _windows(v.shape[2], options)
    keys, valid = windows.keys, windows.valid
    weights = np.where(valid, attn, 0.0)
    dattn = np.where(valid, np.einsum("bhic,bhitc->bhit", dout, v[:, :, keys]), 0.0).astype(attn.dtype)
    # dv: scatter-add each (query, slot) contribution onto its key.
    dv = np.zeros_like(v)
    np.add.at(dv, (slice(None), slice(None), keys[valid]), (weights[..., None] * dout[:, :, :, None, :])[:, :, valid])
    return dattn, dv
