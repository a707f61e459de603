r"""DualViT's two blocks, with the official names.

:class:`DualBlock` (stages 1-2), on pixel tokens ``x (B, n, C)`` and semantic tokens ``S (B, m, C)``:

.. math::  (y, S) = \mathrm{DualAttention}(\mathrm{LN}_1(x), S), \qquad
           x \leftarrow x + \gamma_1 \odot y, \qquad
           x \leftarrow x + \gamma_2 \odot \mathrm{PVT2FFN}(\mathrm{LN}_2(x))

:class:`MergeBlock` (stages 3-4), on the concatenation ``z = [x; S]`` of ``n + m`` tokens:

.. math::  z \leftarrow z + \gamma_1 \odot \mathrm{MHSA}(\mathrm{LN}_1(z)), \qquad
           z \leftarrow z + \gamma_2 \odot \mathrm{MergeFFN}(\mathrm{LN}_2(z))

where ``MHSA`` (:class:`Attention`) is ``proj(MHA(q(z), k, v))`` with ``[k | v] = kv(z)``, and
``MergeFFN`` runs separate networks for the first ``n`` (pixel) and the last ``m`` (semantic)
tokens. ``norm1``/``norm2`` use ``norm_eps`` (1e-6 in the DualViT models); ``gamma1``, ``gamma2``
(``(C,)``) start at 1e-6. ``drop_path`` (training only) applies to both residual branches.
"""
from __future__ import annotations

import numpy as np

from refvit.nn.dropout import DropPath
from refvit.nn.dualvit.dual_attention import DualAttention
from refvit.nn.dualvit.ffn import MergeFFN, PVT2FFN
from refvit.nn.dualvit.tokens import check_heads, multi_head_attention, split_channels
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm
from refvit.nn.parameter import Parameter, resolve_dtype


def _layer_scales(module, dim, value, dtype):
    dtype = resolve_dtype(dtype)
    module.gamma1 = Parameter(np.full(dim, value, dtype))
    module.gamma2 = Parameter(np.full(dim, value, dtype))


class Attention(Module):
    """Multi-head self-attention over all tokens ``(B, N, C)`` -> ``(B, N, C)``: ``q``, ``kv``, ``proj``."""

    def __init__(self, dim, num_heads, dtype=None):
        super().__init__()
        check_heads("Attention", dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = Linear(dim, dim, dtype=dtype)
        self.kv = Linear(dim, 2 * dim, dtype=dtype)
        self.proj = Linear(dim, dim, dtype=dtype)

    def forward(self, x):
        k, v = split_channels(self.kv(x), 2)
        return self.proj(multi_head_attention(self.q(x), k, v, self.num_heads, self.scale))

    def extra_repr(self):
        return f"dim={self.dim}, num_heads={self.num_heads}"


class DualBlock(Module):
    """``(x (B, H W, C), H, W, semantics (B, m, C))`` -> ``(x, semantics)``, both shapes kept.

    ``ffn_dwconv=False`` leaves the depthwise convolution out of the pixel FFN (not an official
    variant: without it the block treats the pixels as an unordered set).
    """

    def __init__(self, dim, num_heads, mlp_ratio, drop_path=0.0, norm_eps=1e-6, layer_scale_init_value=1e-6,
                 ffn_dwconv=True, dtype=None):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.attn = DualAttention(dim, num_heads, drop_path=drop_path,
                                  layer_scale_init_value=layer_scale_init_value, dtype=dtype)
        self.mlp = PVT2FFN(dim, int(dim * mlp_ratio), dwconv=ffn_dwconv, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        _layer_scales(self, dim, layer_scale_init_value, dtype)

    def forward(self, x, height, width, semantics):
        update, semantics = self.attn(self.norm1(x), semantics)
        x = x + self.drop_path(self.gamma1 * update)
        x = x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x), height, width))
        return x, semantics


class MergeBlock(Module):
    """``(z (B, H W + m, C), H, W)`` -> ``(B, H W + m, C)``: pixels first, then the semantic tokens."""

    def __init__(self, dim, num_heads, mlp_ratio, drop_path=0.0, norm_eps=1e-6, layer_scale_init_value=1e-6,
                 dtype=None):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.attn = Attention(dim, num_heads, dtype=dtype)
        self.mlp = MergeFFN(dim, int(dim * mlp_ratio), dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        _layer_scales(self, dim, layer_scale_init_value, dtype)

    def forward(self, x, height, width):
        x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x), height, width))
