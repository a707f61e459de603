r"""DualViT's classification head: class attention on a mean-pooled class token, and token labelling.

:class:`ClassBlock` (``post_network.0``), on ``z (B, 1 + N, C)`` whose first token is the class
token ``c = mean of the N tokens``:

.. math::  c \leftarrow c + \mathrm{proj}\bigl(\mathrm{MHA}(q(\mathrm{LN}_1(z)_0),\, k, v)\bigr),
           \quad [k | v] = \mathrm{kv}(\mathrm{LN}_1(z)), \qquad
           c \leftarrow c + \mathrm{FFN}(\mathrm{LN}_2(c))

(:class:`ClassAttention`: only the class token queries; it attends to all ``1 + N`` tokens,
itself included). The other tokens pass through unchanged. No layer scale.

:func:`token_label_logits`: the inference rule of token labelling,

.. math::  \text{logits} = \mathrm{head}(c) + \tfrac12 \max_{i < n} \mathrm{aux\_head}(t_i)

with the maximum per class over the ``n`` *pixel* tokens ``t_i`` (the semantic tokens are left
out), taken with ``max_pool2d`` so its gradient goes to the first maximal token.
"""
from __future__ import annotations

from refvit import functional as F
from refvit.nn.dualvit.ffn import FFN
from refvit.nn.dualvit.tokens import check_heads, multi_head_attention, split_channels
from refvit.nn.linear import Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


class ClassAttention(Module):
    """``z (B, N, C)`` -> ``(B, 1, C)``: the first token attends to all tokens (``q``, ``kv``, ``proj``)."""

    def __init__(self, dim, num_heads, dtype=None):
        super().__init__()
        check_heads("ClassAttention", dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.kv = Linear(dim, 2 * dim, dtype=dtype)
        self.q = Linear(dim, dim, dtype=dtype)
        self.proj = Linear(dim, dim, dtype=dtype)

    def forward(self, x):
        k, v = split_channels(self.kv(x), 2)
        class_token = F.getitem(x, (slice(None), slice(0, 1)))
        return self.proj(multi_head_attention(self.q(class_token), k, v, self.num_heads, self.scale))


class ClassBlock(Module):
    """``z (B, 1 + N, C)`` -> same shape, only the first (class) token updated."""

    def __init__(self, dim, num_heads, mlp_ratio, norm_eps=1e-6, dtype=None):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.attn = ClassAttention(dim, num_heads, dtype=dtype)
        self.mlp = FFN(dim, int(dim * mlp_ratio), dtype=dtype)

    def forward(self, x):
        class_token, others = F.split(x, [1, tuple(x.shape)[1] - 1], axis=1)
        class_token = class_token + self.attn(self.norm1(x))
        class_token = class_token + self.mlp(self.norm2(class_token))
        return F.concatenate([class_token, others], axis=1)


def token_label_logits(class_logits, pixel_logits):
    """``head(c) (B, K)`` and ``aux_head`` of the pixel tokens ``(B, n, K)`` -> ``(B, K)``."""
    batch, pixels, classes = tuple(pixel_logits.shape)
    column = F.reshape(pixel_logits, (batch, pixels, 1, classes))
    best = F.reshape(F.max_pool2d(column, (pixels, 1)), (batch, classes))
    return class_logits + best * 0.5
