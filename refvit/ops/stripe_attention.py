r"""CSWin stripe attention with locally-enhanced positional encoding (LePE).

Shapes: ``q, k, v (B, heads, H, W, d)``, ``stripe_size = (sh, sw)`` with ``H % sh == 0`` and
``W % sw == 0``, ``lepe_weight (heads*d, 1, 3, 3)``, ``lepe_bias (heads*d,)`` -> ``out (B, heads, H, W, d)``.

The map is cut into ``sh x sw`` windows (``(H, sw)``: vertical stripes, ``(sh, W)``: horizontal stripes,
``(H, W)``: the whole map), ordered (batch, window-row, window-col), tokens row-major inside a window.
For a query :math:`i` in window :math:`\mathcal W(i)`, with channel :math:`c = \text{head}\cdot d + j`:

.. math::  s_{ij} = \sigma\, q_i \cdot k_j, \qquad
           P_{ij} = \frac{e^{s_{ij}}}{\sum_{t \in \mathcal W(i)} e^{s_{it}}}, \qquad
           A_i = \sum_{j \in \mathcal W(i)} P_{ij} v_j

.. math::  \mathrm{LePE}_{i,c} = b_c + \sum_{a,e \in \{-1,0,1\}} w_{c,a,e}\, v_{i + (a, e), c}\,
           [\,i + (a, e) \in \mathcal W(i)\,], \qquad out_i = A_i + \mathrm{LePE}_i

so the 3x3 depthwise convolution is zero-padded at the window's own border and never reads
another window. :math:`\sigma` is ``scale`` (``None`` -> ``d ** -0.5``; ``0.0`` means zero).

Backward, with :math:`G = \partial L / \partial out` and :math:`\delta_i = G_i \cdot A_i`:

.. math::  \frac{\partial L}{\partial v_j} = \sum_i P_{ij} G_i + \sum_{a,e} w_{a,e}\, G_{j - (a,e)}
           [\,j - (a,e) \in \mathcal W(j)\,], \qquad
           dS_{ij} = P_{ij}\,(G_i \cdot v_j - \delta_i)

.. math::  \frac{\partial L}{\partial q_i} = \sigma \sum_j dS_{ij}\, k_j, \qquad
           \frac{\partial L}{\partial k_j} = \sigma \sum_i dS_{ij}\, q_i, \qquad
           \frac{\partial L}{\partial w_{c,a,e}} = \sum_{B, i} G_{i,c}\, v_{i + (a,e), c}\,[\cdot], \qquad
           \frac{\partial L}{\partial b_c} = \sum_{B, i} G_{i,c}
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import (
    as_tuple,
    check_array,
    check_grad,
    check_optional_array,
    check_same_dtype,
    check_scale,
    check_shape,
    fail,
)
from refvit.ops import _dispatch as dispatch

OP = "stripe_attention"
DIFFERENTIABLE = ("q", "k", "v", "lepe_weight", "lepe_bias")


class Cache(NamedTuple):
    q: object
    k: object
    v: object
    lepe_weight: object
    has_bias: bool
    stripe_size: tuple
    scale: float
    saved: tuple  # what the cpu/cuda kernels keep for backward; () for the reference, which recomputes
    backend: str


def forward(q, k, v, stripe_size, lepe_weight=None, lepe_bias=None, scale=None, backend=None):
    """Attention inside ``stripe_size`` windows plus LePE -> ``(out, cache)``; math in the module docstring."""
    backend = dispatch.resolve(OP, backend)
    q = check_array(OP, "q", q, backend, ndim=5)
    k = check_array(OP, "k", k, backend, ndim=5)
    v = check_array(OP, "v", v, backend, ndim=5)
    lepe_weight = check_optional_array(OP, "lepe_weight", lepe_weight, backend, ndim=4)
    lepe_bias = check_optional_array(OP, "lepe_bias", lepe_bias, backend, ndim=1)
    check_same_dtype(OP, q=q, k=k, v=v, lepe_weight=lepe_weight, lepe_bias=lepe_bias)
    batch, heads, height, width, head_dim = q.shape
    if min(heads, height, width, head_dim) < 1:
        fail(OP, "q", "of shape (B, heads, H, W, d) with heads, H, W, d >= 1", f"shape {tuple(q.shape)}")
    check_shape(OP, "k", k, tuple(q.shape))
    check_shape(OP, "v", v, tuple(q.shape))
    stripe_size = _check_stripe_size(stripe_size, height, width)
    channels = heads * head_dim
    if lepe_weight is not None:
        check_shape(OP, "lepe_weight", lepe_weight, (channels, 1, 3, 3))
    if lepe_bias is not None:
        if lepe_weight is None:
            fail(OP, "lepe_bias", "None when 'lepe_weight' is None (LePE is a convolution with a bias)",
                 "an array")
        check_shape(OP, "lepe_bias", lepe_bias, (channels,))
    scale = check_scale(OP, scale, head_dim)

    out, saved = dispatch.run(OP, backend, "forward", _forward_numpy,
                              (q, k, v, lepe_weight, lepe_bias, stripe_size, scale))
    return out, Cache(q, k, v, lepe_weight, lepe_bias is not None, stripe_size, scale, saved, backend)


def backward(dout, cache):
    """``dout (B, heads, H, W, d)`` -> ``(dq, dk, dv, dlepe_weight, dlepe_bias)`` (None for absent LePE)."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.q)
    return dispatch.run(OP, cache.backend, "backward", _backward_numpy,
                        (dout, cache.q, cache.k, cache.v, cache.lepe_weight, cache.has_bias, cache.stripe_size,
                         cache.scale),
                        kernel_args=(dout, cache.saved, cache.has_bias, cache.stripe_size, cache.scale))


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    shape = (1, 2, 4, 6, 3)
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    kwargs = dict(lepe_weight=rng.standard_normal((6, 1, 3, 3)) * 0.5, lepe_bias=rng.standard_normal(6) * 0.5)
    return (q, k, v, (4, 2)), kwargs


def _check_stripe_size(stripe_size, height, width):
    stripe_h, stripe_w = as_tuple(OP, "stripe_size", stripe_size, 2, minimum=1)
    if height % stripe_h or width % stripe_w:
        fail(OP, "stripe_size", f"(sh, sw) dividing the map (H, W) = ({height}, {width})",
             f"({stripe_h}, {stripe_w}): H % sh = {height % stripe_h}, W % sw = {width % stripe_w}")
    return stripe_h, stripe_w


# ---------------------------------------------------------------- NumPy reference

def _to_windows(x, stripe_h, stripe_w):
    """``(B, heads, H, W, d)`` -> ``(B, heads, H/sh, W/sw, sh, sw, d)``: window-row, window-col, then the window."""
    batch, heads, height, width, head_dim = x.shape
    x = x.reshape(batch, heads, height // stripe_h, stripe_h, width // stripe_w, stripe_w, head_dim)
    return x.transpose(0, 1, 2, 4, 3, 5, 6)


def _from_windows(windows):
    """Inverse of :func:`_to_windows`."""
    batch, heads, rows, cols, stripe_h, stripe_w, head_dim = windows.shape
    return windows.transpose(0, 1, 2, 4, 3, 5, 6).reshape(batch, heads, rows * stripe_h, cols * stripe_w, head_dim)


def _tokens(windows):
    """``(..., sh, sw, d)`` -> ``(..., sh*sw, d)``: row-major tokens of each window."""
    *lead, stripe_h, stripe_w, head_dim = windows.shape
    return windows.reshape(*lead, stripe_h * stripe_w, head_dim)


def _softmax_probabilities(q_tokens, k_tokens, scale):
    logits = scale * (q_tokens @ np.swapaxes(k_tokens, -1, -2))
    logits = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=-1, keepdims=True)


def _lepe_taps(lepe_weight, heads, head_dim):
    """``w (heads*d, 1, 3, 3)`` -> ``taps[a][e]`` of shape ``(1, heads, 1, 1, 1, 1, d)``."""
    taps = lepe_weight.reshape(heads, head_dim, 3, 3)
    return [[taps[:, :, a, e].reshape(1, heads, 1, 1, 1, 1, head_dim) for e in range(3)] for a in range(3)]


def _pad_window(windows):
    """Zero rows/columns around every window (axes sh and sw)."""
    return np.pad(windows, [(0, 0)] * 4 + [(1, 1), (1, 1), (0, 0)])


def _forward_numpy(q, k, v, lepe_weight, lepe_bias, stripe_size, scale):
    """-> ``(out, ())``: the backward recomputes the probabilities, so nothing is saved."""
    stripe_h, stripe_w = stripe_size
    heads, head_dim = q.shape[1], q.shape[4]
    q_win, k_win, v_win = (_to_windows(x, stripe_h, stripe_w) for x in (q, k, v))
    probabilities = _softmax_probabilities(_tokens(q_win), _tokens(k_win), scale)
    attended = (probabilities @ _tokens(v_win)).reshape(v_win.shape)
    if lepe_weight is not None:
        attended = attended + _lepe_numpy(v_win, lepe_weight, lepe_bias, heads, head_dim)
    return _from_windows(attended), ()


def _lepe_numpy(v_win, lepe_weight, lepe_bias, heads, head_dim):
    """Depthwise 3x3 cross-correlation of every window, zero-padded at the window border."""
    stripe_h, stripe_w = v_win.shape[4:6]
    padded = _pad_window(v_win)
    taps = _lepe_taps(lepe_weight, heads, head_dim)
    lepe = np.zeros_like(v_win)
    for a in range(3):
        for e in range(3):
            lepe = lepe + taps[a][e] * padded[:, :, :, :, a:a + stripe_h, e:e + stripe_w, :]
    if lepe_bias is not None:
        lepe = lepe + lepe_bias.reshape(1, heads, 1, 1, 1, 1, head_dim)
    return lepe


def _backward_numpy(dout, q, k, v, lepe_weight, has_bias, stripe_size, scale):
    stripe_h, stripe_w = stripe_size
    heads, head_dim = q.shape[1], q.shape[4]
    q_win, k_win, v_win, g_win = (_to_windows(x, stripe_h, stripe_w) for x in (q, k, v, dout))
    q_tok, k_tok, v_tok, g_tok = (_tokens(x) for x in (q_win, k_win, v_win, g_win))
    probabilities = _softmax_probabilities(q_tok, k_tok, scale)

    dv_tok = np.swapaxes(probabilities, -1, -2) @ g_tok                 # sum_i P_ij G_i
    dprobabilities = g_tok @ np.swapaxes(v_tok, -1, -2)                # G_i . v_j
    dlogits = probabilities * (dprobabilities - (dprobabilities * probabilities).sum(axis=-1, keepdims=True))
    dq_tok = scale * (dlogits @ k_tok)
    dk_tok = scale * (np.swapaxes(dlogits, -1, -2) @ q_tok)
    dv_win = dv_tok.reshape(v_win.shape)

    dlepe_weight = dlepe_bias = None
    if lepe_weight is not None:
        # out[y, x] += w[a, e] v[y + a - 1, x + e - 1], so v[y, x] receives w[a, e] G[y - a + 1, x - e + 1].
        padded_g = _pad_window(g_win)
        padded_v = _pad_window(v_win)
        taps = _lepe_taps(lepe_weight, heads, head_dim)
        dlepe_weight = np.zeros((heads, head_dim, 3, 3), dtype=dout.dtype)
        for a in range(3):
            for e in range(3):
                dv_win = dv_win + taps[a][e] * padded_g[:, :, :, :, 2 - a:2 - a + stripe_h, 2 - e:2 - e + stripe_w, :]
                products = g_win * padded_v[:, :, :, :, a:a + stripe_h, e:e + stripe_w, :]
                dlepe_weight[:, :, a, e] = products.sum(axis=(0, 2, 3, 4, 5))
        dlepe_weight = dlepe_weight.reshape(heads * head_dim, 1, 3, 3)
        if has_bias:
            dlepe_bias = g_win.sum(axis=(0, 2, 3, 4, 5)).reshape(heads * head_dim)

    return (_from_windows(dq_tok.reshape(q_win.shape)), _from_windows(dk_tok.reshape(k_win.shape)),
            _from_windows(dv_win), dlepe_weight, dlepe_bias)
