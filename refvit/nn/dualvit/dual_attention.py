r"""``DualAttention``: the two paths of a :class:`DualBlock` and the cross-attentions between them.

Inputs: normalised pixel tokens ``x (B, n, C)`` (``n = H W``) and semantic tokens ``S (B, m, C)``;
``heads`` heads of ``d = C / heads`` channels, ``scale = d ** -0.5``. In order:

1. **semantic self-attention** (no output projection): ``[q | k | v] = qkv_proxy(S)`` =
   ``Linear(LN(S))``, then :math:`S \leftarrow S + \gamma_1 \odot \mathrm{MHA}(q, k, v)`.
2. **semantic-to-pixel cross-attention**: queries from the semantic tokens, keys and values from
   the pixels, :math:`S \leftarrow S + \gamma_2 \odot \mathrm{MHA}(\mathrm{q\_proxy}(\mathrm{LN}(S)),
   k_p, v_p)` with ``[k_p | v_p] = kv_proxy(x)``; no output projection.
3. **semantic MLP**: :math:`S \leftarrow S + \gamma_3 \odot \mathrm{mlp\_proxy}(\mathrm{LN}(S))`,
   ``mlp_proxy`` = ``Linear(C, 4C)``, ReLU, ``Linear(4C, C)``.
4. **pixel-to-semantic cross-attention**: queries from the pixels, keys and values from the updated
   semantic tokens, :math:`y = \mathrm{proj}(\mathrm{MHA}(\mathrm{q}(x), k, v))` with
   ``[k | v] = kv(LN(S))``.

Returns ``(y (B, n, C), S (B, m, C))``. Every attention has ``m`` keys or ``m`` queries, so the
logits number ``B heads (m^2 + 2 n m)``: linear in the number of pixels ``n``, not quadratic.
``gamma1..3`` (``(C,)``) start at ``layer_scale_init_value`` (1e-6). The internal LayerNorms
(``q_proxy_ln``, ``p_ln``, ``proxy_ln``, ``qkv_proxy.0``) have eps 1e-5 (PyTorch's default).
``drop_path`` applies to the three semantic updates (training only).
"""
from __future__ import annotations

import numpy as np

from refvit.nn.activation import ReLU
from refvit.nn.container import Sequential
from refvit.nn.dropout import DropPath
from refvit.nn.dualvit.tokens import check_heads, multi_head_attention, split_channels
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm
from refvit.nn.parameter import Parameter, resolve_dtype


class DualAttention(Module):
    """``(x (B, n, C), semantics (B, m, C))`` -> ``(pixel update (B, n, C), new semantics (B, m, C))``."""

    def __init__(self, dim, num_heads, drop_path=0.0, layer_scale_init_value=1e-6, dtype=None):
        super().__init__()
        check_heads("DualAttention", dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = Linear(dim, dim, dtype=dtype)
        self.kv = Linear(dim, 2 * dim, dtype=dtype)
        self.proj = Linear(dim, dim, dtype=dtype)
        self.q_proxy = Linear(dim, dim, dtype=dtype)
        self.kv_proxy = Linear(dim, 2 * dim, dtype=dtype)
        self.q_proxy_ln = LayerNorm(dim, dtype=dtype)
        self.p_ln = LayerNorm(dim, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.mlp_proxy = Sequential(Linear(dim, 4 * dim, dtype=dtype), ReLU(), Linear(4 * dim, dim, dtype=dtype))
        self.proxy_ln = LayerNorm(dim, dtype=dtype)
        self.qkv_proxy = Sequential(LayerNorm(dim, dtype=dtype), Linear(dim, 3 * dim, dtype=dtype))
        dtype = resolve_dtype(dtype)
        self.gamma1 = Parameter(np.full(dim, layer_scale_init_value, dtype))
        self.gamma2 = Parameter(np.full(dim, layer_scale_init_value, dtype))
        self.gamma3 = Parameter(np.full(dim, layer_scale_init_value, dtype))

    def semantic_self_attention(self, semantics):
        """Step 1's attention: ``MHA`` of the semantic tokens over themselves (no projection)."""
        q, k, v = split_channels(self.qkv_proxy(semantics), 3)
        return multi_head_attention(q, k, v, self.num_heads, self.scale)

    def semantic_to_pixel(self, x, semantics):
        """Step 2's attention: semantic queries ``(B, m, C)`` over pixel keys/values ``(B, n, C)``."""
        k_pixels, v_pixels = split_channels(self.kv_proxy(x), 2)
        return multi_head_attention(self.q_proxy(self.q_proxy_ln(semantics)), k_pixels, v_pixels,
                                    self.num_heads, self.scale)

    def pixel_to_semantic(self, x, semantics):
        """Step 4: pixel queries ``(B, n, C)`` over semantic keys/values ``(B, m, C)``, then ``proj``."""
        k, v = split_channels(self.kv(self.proxy_ln(semantics)), 2)
        return self.proj(multi_head_attention(self.q(x), k, v, self.num_heads, self.scale))

    def forward(self, x, semantics):
        semantics = semantics + self.drop_path(self.gamma1 * self.semantic_self_attention(semantics))
        semantics = semantics + self.drop_path(self.semantic_to_pixel(x, semantics) * self.gamma2)
        semantics = semantics + self.drop_path(self.gamma3 * self.mlp_proxy(self.p_ln(semantics)))
        return self.pixel_to_semantic(x, semantics), semantics

    def extra_repr(self):
        return f"dim={self.dim}, num_heads={self.num_heads}"
