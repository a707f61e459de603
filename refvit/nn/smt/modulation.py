r"""``ScaleAwareModulation``: SMT's convolutional modulation block (the "SAM" attention).

On ``x (B, H, W, dim)`` with ``heads = ca_num_heads`` and ``C_h = dim / heads``:

1. ``v = Linear(x)`` (the value to modulate) and ``s = Linear(x)``.
2. **Multi-head mixed convolution**: the channels of ``s`` are cut into ``heads`` contiguous
   groups; group ``i`` is convolved depthwise with a ``(3 + 2i) x (3 + 2i)`` kernel (padding
   ``1 + i``, with bias): ``local_conv_{i+1}`` (``ops.multiscale_dwconv``).
3. **Scale-aware aggregation**: :func:`regroup_heads` interleaves the heads
   (``channel_shuffle(groups=heads)``: channel ``j heads + i`` of the result is channel ``j``
   of head ``i``), so each run of ``heads`` consecutive channels holds one channel of every
   scale. ``proj0`` is a 1x1 convolution ``dim -> expand_ratio * dim`` with ``groups = C_h``,
   which mixes exactly one such run per group; then ``bn`` (``BatchNorm2d``), GELU, and
   ``proj1``, a dense 1x1 convolution back to ``dim``. The result is the modulator ``m``.
4. ``out = proj(m * v)``.

.. math::  m = W_1 * \mathrm{GELU}(\mathrm{BN}(W_0 * \mathrm{shuffle}(\mathrm{MHMC}(x W_s^\top))))
           \qquad \text{out} = (m \odot x W_v^\top) W_p^\top + b_p

Gradients come from the ops' hand-written backward passes on the tape. Parameter names and
shapes are those of the official ``Attention`` with ``ca_attention=1``: ``proj``, ``v``, ``s``,
``local_conv_1 ... local_conv_{heads}`` (one-based), ``proj0``, ``bn``, ``proj1``.
"""
from __future__ import annotations

import numbers

from refvit import functional as F
from refvit._validate import check_heads
from refvit.nn.activation import GELU
from refvit.nn.conv import Conv2d
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Linear
from refvit.nn.module import Module
from refvit.nn.norm import BatchNorm2d


def regroup_heads(x, heads):
    """``(B, H, W, C)`` with head-contiguous channels -> channel ``j * heads + i`` = channel ``j`` of head ``i``.

    The official code stacks the heads' outputs ``(B, C_h, 1, H, W)`` along axis 2 and reshapes
    to ``(B, C, H, W)``; that order is ``channel_shuffle(x, groups=heads)``.
    """
    return F.channel_shuffle(x, heads)


def ungroup_heads(x, heads):
    """The inverse of :func:`regroup_heads`: ``channel_shuffle(x, groups=C / heads)``."""
    channels = tuple(x.shape)[3]
    return F.channel_shuffle(x, channels // heads)


def _check_heads(where, dim, heads, name):
    return check_heads(where, name, heads, dim)


class ScaleAwareModulation(Module):
    """SMT's scale-aware modulation: ``x (B, H, W, dim)`` -> ``(B, H, W, dim)``.

    ``ca_num_heads`` scales (kernels 3, 5, 7, ...); ``qkv_bias`` gives ``v`` and ``s`` biases;
    ``expand_ratio`` widens the aggregation (``proj0``: ``dim -> expand_ratio * dim``);
    ``proj_drop`` is a ``Dropout`` after ``proj``. ``bn`` follows ``train()``/``eval()``.
    """

    def __init__(self, dim, ca_num_heads=4, qkv_bias=False, proj_drop=0.0, expand_ratio=2, dtype=None):
        super().__init__()
        _check_heads("ScaleAwareModulation", dim, ca_num_heads, "ca_num_heads")
        if isinstance(expand_ratio, bool) or not isinstance(expand_ratio, numbers.Integral) or expand_ratio < 1:
            raise ValueError(f"ScaleAwareModulation: 'expand_ratio' must be a positive integer; got {expand_ratio!r}")
        self.dim, self.ca_num_heads, self.expand_ratio = dim, ca_num_heads, expand_ratio
        self.split_groups = dim // ca_num_heads  # channels per head = groups of proj0
        self.act = GELU()
        self.proj = Linear(dim, dim, dtype=dtype)
        self.proj_drop = Dropout(proj_drop)
        self.v = Linear(dim, dim, bias=qkv_bias, dtype=dtype)
        self.s = Linear(dim, dim, bias=qkv_bias, dtype=dtype)
        per_head = self.split_groups
        for head in range(ca_num_heads):
            conv = Conv2d(per_head, per_head, 3 + 2 * head, padding=1 + head, groups=per_head, dtype=dtype)
            setattr(self, f"local_conv_{head + 1}", conv)
        self.proj0 = Conv2d(dim, dim * expand_ratio, 1, groups=self.split_groups, dtype=dtype)
        self.bn = BatchNorm2d(dim * expand_ratio, dtype=dtype)
        self.proj1 = Conv2d(dim * expand_ratio, dim, 1, dtype=dtype)

    def local_convs(self):
        """The per-head depthwise convolutions ``local_conv_1 ... local_conv_{heads}``, in head order."""
        return [getattr(self, f"local_conv_{head + 1}") for head in range(self.ca_num_heads)]

    def mixed_scale_conv(self, s):
        """Multi-head mixed convolution of ``s (B, H, W, dim)``: head ``i`` with kernel ``3 + 2i``."""
        convs = self.local_convs()
        biases = None if convs[0].bias is None else [conv.bias for conv in convs]
        return F.multiscale_dwconv(s, [conv.weight for conv in convs], biases, self.ca_num_heads)

    def modulator(self, x):
        """``m (B, H, W, dim)``: ``proj1(GELU(bn(proj0(regroup(mixed_scale_conv(s(x)))))))``."""
        s = regroup_heads(self.mixed_scale_conv(self.s(x)), self.ca_num_heads)
        return self.proj1(self.act(self.bn(self.proj0(s))))

    def forward(self, x):
        return self.proj_drop(self.proj(self.modulator(x) * self.v(x)))

    def extra_repr(self):
        return f"dim={self.dim}, ca_num_heads={self.ca_num_heads}, expand_ratio={self.expand_ratio}"
