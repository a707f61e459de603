r"""``SMTBlock``: pre-norm residual block with SMT's attention and convolutional MLP.

.. math::  x \leftarrow x + \mathrm{DropPath}(\gamma_1 \odot \mathrm{attn}(\mathrm{LN}_1(x))), \qquad
           x \leftarrow x + \mathrm{DropPath}(\gamma_2 \odot \mathrm{mlp}(\mathrm{LN}_2(x)))

``attn`` is a :class:`ScaleAwareModulation` (``ca_attention=1``) or a
:class:`ConvSelfAttention` (``ca_attention=0``); ``mlp`` is a :class:`DWConvMlp` with
``int(dim * mlp_ratio)`` hidden features. Norms are ``LayerNorm(dim, eps=1e-6)`` in the SMT
models (``norm_eps``). ``gamma_1``, ``gamma_2`` (``(dim,)``, ``layerscale_value`` at first) exist
only with ``use_layerscale``; otherwise they are the constant 1.
"""
from __future__ import annotations

import numpy as np

from refvit.nn.activation import GELU
from refvit.nn.dropout import DropPath
from refvit.nn.linear import Identity
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm
from refvit.nn.parameter import Parameter, resolve_dtype
from refvit.nn.smt.mlp import DWConvMlp
from refvit.nn.smt.modulation import ScaleAwareModulation
from refvit.nn.smt.self_attention import ConvSelfAttention


class SMTBlock(Module):
    """``x (B, H, W, dim)`` -> ``(B, H, W, dim)``; submodules ``norm1``, ``attn``, ``drop_path``,
    ``norm2``, ``mlp`` (and parameters ``gamma_1``, ``gamma_2`` with ``use_layerscale``)."""

    def __init__(self, dim, ca_num_heads, sa_num_heads, *, mlp_ratio=4.0, qkv_bias=False, qk_scale=None,
                 use_layerscale=False, layerscale_value=1e-4, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 act_layer=GELU, norm_eps=1e-6, ca_attention=1, expand_ratio=2, dtype=None):
        super().__init__()
        if ca_attention not in (0, 1):
            raise ValueError(f"SMTBlock: 'ca_attention' must be 1 (scale-aware modulation) or 0 (self-attention); "
                             f"got {ca_attention!r}")
        self.ca_attention = ca_attention
        self.norm1 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        if ca_attention == 1:
            self.attn = ScaleAwareModulation(dim, ca_num_heads, qkv_bias=qkv_bias, proj_drop=drop,
                                             expand_ratio=expand_ratio, dtype=dtype)
        else:
            self.attn = ConvSelfAttention(dim, sa_num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                          attn_drop=attn_drop, proj_drop=drop, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.norm2 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.mlp = DWConvMlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop, dtype=dtype)
        if use_layerscale:
            dtype = resolve_dtype(dtype)
            self.gamma_1 = Parameter(np.full(dim, layerscale_value, dtype))
            self.gamma_2 = Parameter(np.full(dim, layerscale_value, dtype))
        else:
            self.gamma_1 = self.gamma_2 = None

    def _scaled(self, gamma, branch):
        return branch if gamma is None else branch * gamma

    def forward(self, x):
        x = x + self.drop_path(self._scaled(self.gamma_1, self.attn(self.norm1(x))))
        return x + self.drop_path(self._scaled(self.gamma_2, self.mlp(self.norm2(x))))

    def extra_repr(self):
        return f"ca_attention={self.ca_attention}"
