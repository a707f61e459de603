"""The ops on ``Tensor``s, recorded on the tape: ``from refvit import functional as F``.

Every op of the op table (:func:`refvit.ops.table`) has its function here, written out, with the
signature of the op's ``forward`` (the op contract of ``docs/conventions.md``); each
returns a ``Tensor`` (a tuple of them for an op with several outputs) and is
``apply(ops.<name>, ...)``: the op's forward on the arrays inside the ``Tensor`` arguments,
recorded on the tape so that ``Tensor.backward`` reaches the op's ``backward``. Arguments may be
``Tensor``s or NumPy arrays; arrays are constants. ``backend=`` picks the op's backend for this
call (``None``: the current default, see :func:`refvit.use_backend`). The math of each op is in
its module's docstring (``refvit.ops.<name>``) and its docs page (``docs/ops/``).

The structural ops of :mod:`refvit.autograd.functions` (``reshape``, ``permute``, ``transpose``,
``concatenate``, ``stack``, ``split``, ``chunk``, ``getitem``, ``pad``, ``broadcast_to``, ...)
are here too.
"""
from __future__ import annotations

from refvit import ops
from refvit.autograd.functions import (  # noqa: F401  (re-exported)
    broadcast_to, cat, chunk, concatenate, expand, flatten, getitem, pad, permute, reshape, split, squeeze,
    stack, transpose, unsqueeze,
)
from refvit.autograd.tape import apply


def linear(x, weight, bias=None, backend=None):
    """``x (..., in) @ weight (out, in)^T + bias (out,)`` -> ``(..., out)``."""
    return apply(ops.linear, x, weight, bias, backend=backend)


def linear_gelu(x, weight, bias=None, approximate="none", backend=None):
    """``gelu(x (..., in) @ weight (out, in)^T + bias (out,))`` -> ``(..., out)``; GELU exact or ``"tanh"``."""
    return apply(ops.linear_gelu, x, weight, bias, approximate=approximate, backend=backend)


def layer_norm(x, weight, bias, eps=1e-5, backend=None):
    """Normalise over the last axis, then ``* weight + bias`` (both ``(C,)``)."""
    return apply(ops.layer_norm, x, weight, bias, eps=eps, backend=backend)


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, backend=None):
    """Normalise over all axes but the last (``x (..., C)``); updates the running stats in place when training."""
    return apply(ops.batch_norm, x, weight, bias, running_mean, running_var, training, momentum=momentum,
                 eps=eps, backend=backend)


def gelu(x, approximate="none", backend=None):
    """GELU, exact (erf) or ``approximate="tanh"``."""
    return apply(ops.gelu, x, approximate=approximate, backend=backend)


def relu(x, backend=None):
    """``max(x, 0)`` elementwise."""
    return apply(ops.relu, x, backend=backend)


def silu(x, backend=None):
    """``x * sigmoid(x)`` elementwise."""
    return apply(ops.silu, x, backend=backend)


def sigmoid(x, backend=None):
    """``1 / (1 + exp(-x))`` elementwise."""
    return apply(ops.sigmoid, x, backend=backend)


def tanh(x, backend=None):
    """``tanh(x)`` elementwise."""
    return apply(ops.tanh, x, backend=backend)


def softmax(x, axis=-1, backend=None):
    """Softmax along ``axis``."""
    return apply(ops.softmax, x, axis=axis, backend=backend)


def add(a, b, backend=None):
    """``a + b`` with NumPy broadcasting."""
    return apply(ops.add, a, b, backend=backend)


def mul(a, b, backend=None):
    """``a * b`` with NumPy broadcasting."""
    return apply(ops.mul, a, b, backend=backend)


def mean(x, axis, keepdims=False, backend=None):
    """Mean over ``axis`` (an int or a tuple of ints)."""
    return apply(ops.mean, x, axis, keepdims=keepdims, backend=backend)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in/groups, kh, kw)`` -> ``(B, H', W', C_out)``."""
    return apply(ops.conv2d, x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 backend=backend)


def avg_pool2d(x, kernel_size, stride=None, padding=0, backend=None):
    """Average pooling of ``x (B, H, W, C)``, zero padding counted (``count_include_pad=True``)."""
    return apply(ops.avg_pool2d, x, kernel_size, stride=stride, padding=padding, backend=backend)


def max_pool2d(x, kernel_size, stride=None, padding=0, backend=None):
    """Max pooling of ``x (B, H, W, C)``."""
    return apply(ops.max_pool2d, x, kernel_size, stride=stride, padding=padding, backend=backend)


def attention(q, k, v, bias=None, scale=None, backend=None):
    """``softmax(scale * q k^T + bias) v`` with ``q (B, h, Nq, d)``, ``k, v (B, h, Nk, d)``."""
    return apply(ops.attention, q, k, v, bias=bias, scale=scale, backend=backend)


def channel_shuffle(x, groups, backend=None):
    """Channel ``j*groups + i`` of the output is channel ``i*(C/groups) + j`` of ``x (..., C)``."""
    return apply(ops.channel_shuffle, x, groups, backend=backend)


def cross_entropy(logits, target, label_smoothing=0.0, backend=None):
    """Mean cross-entropy of ``logits (B, K)`` against integer classes ``target (B,)`` -> a 0-d ``Tensor``."""
    return apply(ops.cross_entropy, logits, target, label_smoothing=label_smoothing, backend=backend)


def na1d(q, k, v, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """1-D neighbourhood attention of ``q, k, v (B, heads, n, d)``, ``rpb (heads, 2k-1)`` -> ``(B, heads, n, d)``."""
    return apply(ops.na1d, q, k, v, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb,
                 scale=scale, backend=backend)


def na2d(q, k, v, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """2-D neighbourhood attention of ``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)``
    -> ``(B, heads, H, W, d)``."""
    return apply(ops.na2d, q, k, v, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb,
                 scale=scale, backend=backend)


def na1d_qk(q, k, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """The logits of 1-D neighbourhood attention, ``q, k (B, heads, n, d)`` -> ``(B, heads, n, k)``;
    ``scale=None`` means 1 (NATTEN's ``na1d_qk``: scale ``q`` first)."""
    return apply(ops.na1d_qk, q, k, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb,
                 scale=scale, backend=backend)


def na1d_av(attn, v, kernel_size, dilation=1, stride=1, is_causal=False, backend=None):
    """The neighbourhood's values weighted by ``attn (B, heads, n, k)``: ``v (B, heads, n, d)``
    -> ``(B, heads, n, d)``."""
    return apply(ops.na1d_av, attn, v, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal,
                 backend=backend)


def na2d_qk(q, k, kernel_size, dilation=1, stride=1, is_causal=False, rpb=None, scale=None, backend=None):
    """The logits of 2-D neighbourhood attention, ``q, k (B, heads, H, W, d)`` -> ``(B, heads, H, W, kh*kw)``;
    ``scale=None`` means 1 (NATTEN's ``na2d_qk``: scale ``q`` first)."""
    return apply(ops.na2d_qk, q, k, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb,
                 scale=scale, backend=backend)


def na2d_av(attn, v, kernel_size, dilation=1, stride=1, is_causal=False, backend=None):
    """The neighbourhood's values weighted by ``attn (B, heads, H, W, kh*kw)``: ``v (B, heads, H, W, d)``
    -> ``(B, heads, H, W, d)``."""
    return apply(ops.na2d_av, attn, v, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal,
                 backend=backend)


def stripe_attention(q, k, v, stripe_size, lepe_weight=None, lepe_bias=None, scale=None, backend=None):
    """Attention inside ``stripe_size`` windows of ``q, k, v (B, heads, H, W, d)``, plus LePE (a depthwise
    3x3 convolution of ``v`` with ``lepe_weight (heads*d, 1, 3, 3)``, ``lepe_bias (heads*d,)``)."""
    return apply(ops.stripe_attention, q, k, v, stripe_size, lepe_weight=lepe_weight, lepe_bias=lepe_bias,
                 scale=scale, backend=backend)


def multiscale_dwconv(x, weights, biases, heads, backend=None):
    """Depthwise convolutions of ``x (B, H, W, C)`` split into ``heads`` channel groups, head ``i`` with
    kernel ``3 + 2i`` (``weights[i] (C/heads, 1, k, k)``, ``biases[i] (C/heads,)`` or ``biases=None``)."""
    return apply(ops.multiscale_dwconv, x, weights, biases, heads, backend=backend)


def relative_position_bias(table, window, backend=None):
    """The bias ``(heads, N, N)``, ``N = W_h W_w``, gathered from ``table ((2W_h-1)(2W_w-1), heads)``."""
    return apply(ops.relative_position_bias, table, window, backend=backend)
