r"""Multi-head mixed convolution (SMT's scale-aware modulation): one depthwise kernel size per head.

Shapes: ``x (B, H, W, C)`` channels-last, ``heads`` dividing ``C``, ``C_h = C / heads``;
``weights[i] (C_h, 1, k_i, k_i)`` with ``k_i = 3 + 2i`` (PyTorch's depthwise ``Conv2d`` layout);
``biases[i] (C_h,)`` or ``biases=None``; ``out (B, H, W, C)``.

Head ``i`` owns the channels ``c \in [i C_h, (i+1) C_h)`` and convolves them depthwise with its
own kernel, radius ``r_i = 1 + i`` (padding ``r_i``, stride 1, so the map keeps its size). With
``j = c - i C_h`` the channel's index inside its head and ``x`` zero outside the map:

.. math::  y_{b,p,q,c} = \beta^{(i)}_j + \sum_{s=0}^{k_i-1}\sum_{t=0}^{k_i-1}
           w^{(i)}_{j,0,s,t}\; x_{b,\,p+s-r_i,\,q+t-r_i,\,c}

Backward, with :math:`g = \partial L/\partial y` (every tap is a shifted copy of ``x``):

.. math::  \frac{\partial L}{\partial x_{b,p,q,c}} = \sum_{s,t} w^{(i)}_{j,0,s,t}\;
           g_{b,\,p-s+r_i,\,q-t+r_i,\,c}
           \qquad \frac{\partial L}{\partial w^{(i)}_{j,0,s,t}} = \sum_{b,p,q}
           g_{b,p,q,c}\; x_{b,\,p+s-r_i,\,q+t-r_i,\,c}
           \qquad \frac{\partial L}{\partial \beta^{(i)}_j} = \sum_{b,p,q} g_{b,p,q,c}

The gradient of ``x`` is the same correlation run on ``g`` with every kernel flipped.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_int, check_same_dtype, describe, fail
from refvit.ops import _dispatch as dispatch

OP = "multiscale_dwconv"
DIFFERENTIABLE = ("x", "weights", "biases")


class Cache(NamedTuple):
    x: object
    weights: tuple
    has_bias: bool
    backend: str


def kernel_size(head):
    """The depthwise kernel side of head ``head``: ``3 + 2 * head`` (radius ``1 + head``)."""
    return 3 + 2 * head


def forward(x, weights, biases, heads, backend=None):
    """``multiscale_dwconv(x, weights, biases, heads)`` -> ``(out, cache)``; math in the module docstring."""
    backend = dispatch.resolve(OP, backend)
    x, weights, biases = _check_inputs(x, weights, biases, heads, backend)
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x, weights, biases))
    return out, Cache(x, weights, biases is not None, backend)


def backward(dout, cache):
    """``dout (B, H, W, C)`` -> ``(dx, dweights, dbiases)``; ``dweights``/``dbiases`` are tuples
    with one array per head (``dbiases`` is ``None`` when ``forward`` had no biases)."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.x)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.x, cache.weights, cache.has_bias))


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    heads, per_head = 2, 2
    x = rng.standard_normal((1, 4, 3, heads * per_head))
    weights = tuple(rng.standard_normal((per_head, 1, kernel_size(i), kernel_size(i))) * 0.3 for i in range(heads))
    biases = tuple(rng.standard_normal(per_head) for _ in range(heads))
    return (x, weights, biases), {"heads": heads}


def _check_inputs(x, weights, biases, heads, backend):
    heads = check_int(OP, "heads", heads, minimum=1)
    x = check_array(OP, "x", x, backend, ndim=4)
    channels = x.shape[3]
    if channels % heads:
        fail(OP, "heads", f"a divisor of the channel count C = {channels} of 'x'", heads)
    per_head = channels // heads
    weights = _check_sequence("weights", weights, heads)
    weights = tuple(_check_weight(i, w, per_head, backend) for i, w in enumerate(weights))
    if biases is not None:
        biases = _check_sequence("biases", biases, heads)
        biases = tuple(_check_bias(i, b, per_head, backend) for i, b in enumerate(biases))
    named = {"x": x, **{f"weights[{i}]": w for i, w in enumerate(weights)}}
    named.update({f"biases[{i}]": b for i, b in enumerate(biases or ())})
    check_same_dtype(OP, **named)
    return x, weights, biases


def _check_sequence(arg, value, heads):
    if not isinstance(value, (list, tuple)):
        fail(OP, arg, f"a sequence of {heads} arrays (one per head)", describe(value), TypeError)
    if len(value) != heads:
        fail(OP, arg, f"a sequence of {heads} arrays (one per head)", f"{len(value)} arrays")
    return value


def _check_weight(head, w, per_head, backend):
    arg = f"weights[{head}]"
    w = check_array(OP, arg, w, backend, ndim=4)
    side = kernel_size(head)
    expected = (per_head, 1, side, side)
    if tuple(w.shape) != expected:
        fail(OP, arg, f"of shape {expected} (head {head}: depthwise kernel 3 + 2*{head} = {side})",
             f"shape {tuple(w.shape)}")
    return w


def _check_bias(head, b, per_head, backend):
    arg = f"biases[{head}]"
    b = check_array(OP, arg, b, backend, ndim=1)
    if tuple(b.shape) != (per_head,):
        fail(OP, arg, f"of shape ({per_head},)", f"shape {tuple(b.shape)}")
    return b


def _head_channels(x, heads):
    """The channel slices of the heads, in order."""
    per_head = x.shape[3] // heads
    return [slice(i * per_head, (i + 1) * per_head) for i in range(heads)]


def _depthwise_conv(x, w, b):
    """One head: ``x (B, H, W, C_h)``, ``w (C_h, 1, k, k)``, ``b (C_h,)`` or None; zero padding ``k // 2``."""
    side = w.shape[2]
    radius = side // 2
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    out = np.zeros_like(x)
    for s in range(side):
        for t in range(side):
            out += w[:, 0, s, t] * padded[:, s:s + height, t:t + width, :]
    if b is not None:
        out += b
    return out


def _forward_numpy(x, weights, biases):
    heads = len(weights)
    parts = [_depthwise_conv(x[..., channels], weights[i], None if biases is None else biases[i])
             for i, channels in enumerate(_head_channels(x, heads))]
    return np.concatenate(parts, axis=3)


def _backward_numpy(dout, x, weights, has_bias):
    """Scatter form: tap ``(s, t)`` read ``x`` shifted by ``(s - r, t - r)``, so its share of
    ``dout`` flows back to that shifted window of ``dx`` and pairs with it in ``dw``."""
    heads = len(weights)
    height, width = x.shape[1:3]
    dx = np.zeros_like(x)
    dweights, dbiases = [], []
    for i, channels in enumerate(_head_channels(x, heads)):
        w = weights[i]
        side = w.shape[2]
        radius = side // 2
        g = dout[..., channels]
        padded_x = np.pad(x[..., channels], ((0, 0), (radius, radius), (radius, radius), (0, 0)))
        padded_dx = np.zeros_like(padded_x)
        dw = np.zeros_like(w)
        for s in range(side):
            for t in range(side):
                window = (slice(None), slice(s, s + height), slice(t, t + width), slice(None))
                padded_dx[window] += w[:, 0, s, t] * g
                dw[:, 0, s, t] = np.sum(g * padded_x[window], axis=(0, 1, 2))
        dx[..., channels] = padded_dx[:, radius:radius + height, radius:radius + width, :]
        dweights.append(dw)
        dbiases.append(np.sum(g, axis=(0, 1, 2)))
    return dx, tuple(dweights), tuple(dbiases) if has_bias else None
