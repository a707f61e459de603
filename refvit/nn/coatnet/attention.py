r"""``Attention2d``: multi-head relative self-attention over a whole ``(H, W)`` map (CoAtNet).

On ``x (B, H, W, dim)``, ``N = H W`` tokens in row-major order, ``heads = dim_out / dim_head``:

1. ``qkv``: a 1x1 convolution ``dim -> 3 dim_out``. Its channels are **head-first**: head ``h``
   owns channels ``[3 d h, 3 d (h+1))``, split as ``[q_h | k_h | v_h]`` (``d = dim_head``), not
   ``[q | k | v]`` for all heads.
2. Relative attention, per head: ``softmax(d^{-1/2} q k^T + B) v`` with ``B = rel_pos.get_bias()``
   ``(heads, N, N)`` (``ops.attention`` with a bias; the bias gradient reaches the table).
3. Heads are merged as channel ``h d + j`` and ``proj`` (1x1 convolution ``dim_out -> dim_out``) mixes them.

The map must have the size the bias table was built for.
"""
from __future__ import annotations

from refvit import functional as F
from refvit._validate import check_int
from refvit.nn.coatnet.rel_pos import RelPosBias
from refvit.nn.coatnet.pointwise import PointwiseConv2d
from refvit.nn.dropout import Dropout
from refvit.nn.module import Module


class Attention2d(Module):
    """``x (B, H, W, dim)`` -> ``(B, H, W, dim_out)``; parameters ``qkv.*``, ``rel_pos.*``, ``proj.*``.

    ``window_size = (H, W)`` builds ``rel_pos`` (a :class:`RelPosBias`); ``None`` means plain
    attention without a bias. ``attn_drop`` must be 0 (``ops.attention`` has no dropout on the
    probabilities); ``proj_drop`` is a ``Dropout`` after ``proj``.
    """

    def __init__(self, dim, dim_out=None, dim_head=32, window_size=None, bias=True, attn_drop=0.0, proj_drop=0.0,
                 dtype=None):
        super().__init__()
        dim = check_int("Attention2d", "dim", dim, minimum=1)
        dim_out = check_int("Attention2d", "dim_out", dim_out or dim, minimum=1)
        dim_head = check_int("Attention2d", "dim_head", dim_head, minimum=1)
        if dim_out % dim_head:
            raise ValueError(f"Attention2d: 'dim_out' must be a multiple of dim_head ({dim_head}); got {dim_out}")
        if attn_drop:
            raise ValueError(f"Attention2d: 'attn_drop' must be 0.0 (ops.attention has no dropout); got {attn_drop!r}")
        self.num_heads, self.dim_head = dim_out // dim_head, dim_head
        self.qkv = PointwiseConv2d(dim, 3 * dim_out, bias=bias, dtype=dtype)
        self.rel_pos = RelPosBias(window_size, self.num_heads, dtype=dtype) if window_size is not None else None
        self.proj = PointwiseConv2d(dim_out, dim_out, bias=bias, dtype=dtype)
        self.proj_drop = Dropout(proj_drop)

    def split_heads(self, qkv):
        """``qkv (B, H, W, 3 heads d)`` -> ``q, k, v`` each ``(B, heads, N, d)`` (head-first channels)."""
        batch, height, width, _ = qkv.shape
        per_head = F.reshape(qkv, (batch, height * width, self.num_heads, 3 * self.dim_head))
        per_head = F.permute(per_head, (0, 2, 1, 3))
        return F.split(per_head, self.dim_head, axis=3)

    def forward(self, x):
        batch, height, width, _ = x.shape
        if self.rel_pos is not None and self.rel_pos.window_size != (height, width):
            raise ValueError(f"Attention2d: 'x' must be a (B, {self.rel_pos.window_size[0]}, "
                             f"{self.rel_pos.window_size[1]}, C) map (the bias table's window); "
                             f"got shape {tuple(x.shape)}")
        q, k, v = self.split_heads(self.qkv(x))
        bias = self.rel_pos.get_bias() if self.rel_pos is not None else None
        out = F.attention(q, k, v, bias=bias, scale=self.dim_head ** -0.5)
        out = F.reshape(F.permute(out, (0, 2, 1, 3)), (batch, height, width, self.num_heads * self.dim_head))
        return self.proj_drop(self.proj(out))

    def extra_repr(self):
        return f"num_heads={self.num_heads}, dim_head={self.dim_head}"
