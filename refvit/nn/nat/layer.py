r"""``NATLayer``: one NAT / DiNAT layer, neighbourhood attention then an MLP, both pre-norm and residual.

On ``x (B, H, W, C)``:

.. math::
    x &\leftarrow x + \mathrm{DropPath}(\gamma_1 \odot \mathrm{NA}_{k,\delta}(\mathrm{LN}_1(x))) \\
    x &\leftarrow x + \mathrm{DropPath}(\gamma_2 \odot \mathrm{fc}_2(\mathrm{GELU}(\mathrm{fc}_1(\mathrm{LN}_2(x)))))

``NA`` is :class:`~refvit.nn.nat.NeighborhoodAttention2D` with kernel ``k`` and dilation ``delta``:
a DiNAT layer is a NAT layer with ``dilation > 1`` (DiNA); nothing else differs. The MLP has
``int(C * mlp_ratio)`` hidden units and exact (erf) GELU. The layer-scale vectors
``gamma1, gamma2 (C,)`` exist only when ``layer_scale`` is a number (their initial value, as
the official NAT-S/B use ``1e-5``); otherwise they are 1 and not registered.

``state_dict`` keys in the official order: ``gamma1, gamma2`` (with layer scale), ``norm1.*``,
``attn.qkv.*``, ``attn.rpb``, ``attn.proj.*``, ``norm2.*``, ``mlp.fc1.*``, ``mlp.fc2.*``.
"""
from __future__ import annotations

import numbers

import numpy as np

from refvit import functional as F
from refvit._validate import check_heads, check_int
from refvit.nn.activation import GELU
from refvit.nn.dropout import DropPath
from refvit.nn.linear import Identity
from refvit.nn.mlp import Mlp
from refvit.nn.module import Module
from refvit.nn.nat.attention import NeighborhoodAttention2D
from refvit.nn.norm import LayerNorm
from refvit.nn.parameter import Parameter, resolve_dtype


class NATLayer(Module):
    """``x (B, H, W, dim)`` -> ``(B, H, W, dim)``; see the module docstring."""

    def __init__(self, dim, num_heads, *, kernel_size=7, dilation=None, mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
                 drop=0.0, attn_drop=0.0, drop_path=0.0, act_layer=GELU, norm_layer=LayerNorm, layer_scale=None,
                 dtype=None):
        super().__init__()
        dtype = resolve_dtype(dtype)
        self.dim = check_int("NATLayer", "dim", dim, minimum=1)
        self.num_heads = check_heads("NATLayer", "num_heads", num_heads, self.dim)
        self.mlp_ratio = mlp_ratio
        self.layer_scale = layer_scale is not None and isinstance(layer_scale, numbers.Real) \
            and not isinstance(layer_scale, bool)
        if self.layer_scale:  # registered first, as in the official layer (own parameters before children)
            self.gamma1 = Parameter(np.full(self.dim, float(layer_scale), dtype))
            self.gamma2 = Parameter(np.full(self.dim, float(layer_scale), dtype))
        self.norm1 = norm_layer(dim, dtype=dtype)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, dilation=dilation, qkv_bias=qkv_bias,
                                            qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.norm2 = norm_layer(dim, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop, dtype=dtype)

    def forward(self, x):
        attended = self.attn(self.norm1(x))
        if self.layer_scale:
            attended = F.mul(attended, self.gamma1)
        x = x + self.drop_path(attended)
        transformed = self.mlp(self.norm2(x))
        if self.layer_scale:
            transformed = F.mul(transformed, self.gamma2)
        return x + self.drop_path(transformed)

    def extra_repr(self):
        text = f"dim={self.dim}, num_heads={self.num_heads}, mlp_ratio={self.mlp_ratio}"
        return text + (", layer_scale=True" if self.layer_scale else "")
