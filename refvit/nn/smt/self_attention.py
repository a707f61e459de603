r"""``ConvSelfAttention``: SMT's multi-head self-attention (the "MSA" attention of stages 3-4).

On ``x (B, H, W, dim)``, ``N = H W`` tokens in row-major order, ``heads = sa_num_heads``,
``d = dim / heads``:

1. ``q = Linear(x)``; ``kv = Linear(x)`` with ``2 dim`` outputs ordered ``[k | v]``, each half
   split into heads as channel ``h d + j``.
2. Global attention per head: ``softmax(scale q k^T) v`` (``ops.attention``), heads merged as
   channel ``h d + j``. ``scale = qk_scale`` when given, else ``d ** -0.5``.
3. A depthwise 3x3 convolution (with bias, padding 1) of ``v`` with its heads merged, which is
   the ``v`` half of ``kv`` read as a ``(B, H, W, dim)`` map, is added: ``local_conv``.
4. ``proj`` Linear.

.. math::  \text{out} = \bigl(\mathrm{Attn}(q, k, v) + \mathrm{DWConv}_{3\times 3}(v)\bigr) W_p^\top + b_p

Parameters ``proj``, ``q``, ``kv``, ``local_conv`` as in the official ``Attention`` with
``ca_attention=0`` in ``models/smt.py``, the revision whose names refvit keeps (docs/conventions.md,
"Modules and models").
A later revision of the official code names the 3x3 convolution ``dw_conv``; see
:func:`refvit.models.smt.rename_dw_conv` to load such a ``state_dict``.
"""
from __future__ import annotations

from refvit import functional as F
from refvit.nn.conv import Conv2d
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Linear
from refvit.nn.module import Module
from refvit.nn.smt.modulation import _check_heads


class ConvSelfAttention(Module):
    """Global multi-head self-attention plus a depthwise 3x3 convolution of ``v``:
    ``x (B, H, W, dim)`` -> ``(B, H, W, dim)``.

    ``attn_drop`` must be 0 (``ops.attention`` has no dropout on the probabilities);
    ``proj_drop`` is a ``Dropout`` after ``proj``.
    """

    def __init__(self, dim, sa_num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0,
                 dtype=None):
        super().__init__()
        _check_heads("ConvSelfAttention", dim, sa_num_heads, "sa_num_heads")
        if attn_drop:
            raise ValueError(f"ConvSelfAttention: 'attn_drop' must be 0.0 (ops.attention has no dropout); "
                             f"got {attn_drop!r}")
        self.dim, self.sa_num_heads = dim, sa_num_heads
        self.head_dim = dim // sa_num_heads
        self.scale = float(qk_scale) if qk_scale is not None else self.head_dim ** -0.5
        self.proj = Linear(dim, dim, dtype=dtype)
        self.proj_drop = Dropout(proj_drop)
        self.q = Linear(dim, dim, bias=qkv_bias, dtype=dtype)
        self.kv = Linear(dim, 2 * dim, bias=qkv_bias, dtype=dtype)
        self.local_conv = Conv2d(dim, dim, 3, padding=1, groups=dim, dtype=dtype)

    def split_heads(self, tokens):
        """``(B, H, W, dim)`` -> ``(B, heads, N, d)``; channel ``h d + j`` goes to head ``h``."""
        batch, height, width, _ = tokens.shape
        tokens = F.reshape(tokens, (batch, height * width, self.sa_num_heads, self.head_dim))
        return F.permute(tokens, (0, 2, 1, 3))

    def forward(self, x):
        batch, height, width, _ = x.shape
        q = self.split_heads(self.q(x))
        k_map, v_map = F.split(self.kv(x), [self.dim, self.dim], axis=3)
        attended = F.attention(q, self.split_heads(k_map), self.split_heads(v_map), scale=self.scale)
        attended = F.reshape(F.permute(attended, (0, 2, 1, 3)), (batch, height, width, self.dim))
        return self.proj_drop(self.proj(attended + self.local_conv(v_map)))

    def extra_repr(self):
        return f"dim={self.dim}, sa_num_heads={self.sa_num_heads}, scale={self.scale:g}"
