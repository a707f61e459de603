r"""``NeighborhoodAttention2D``: multi-head (dilated) neighbourhood self-attention on a feature map.

On ``x (B, H, W, C)`` with ``C = heads * d``:

.. math::
    [q \,|\, k \,|\, v] &= x\, W_{qkv}^\top + b_{qkv}  \qquad (C \to 3C,\ \text{channels } [3, \text{heads}, d]) \\
    o &= \mathrm{NA}_{k,\delta}(q, k, v;\ \mathrm{rpb},\ \mathrm{scale}) \\
    y &= o\, W_{proj}^\top + b_{proj}

where :math:`\mathrm{NA}_{k,\delta}` is :mod:`refvit.ops.na2d` with kernel ``k`` and dilation
``\delta``: each query attends to the ``k x k`` keys of its (dilated) neighbourhood, the window
shifted inward at the borders, with the relative positional bias ``rpb (heads, 2k-1, 2k-1)``
added to ``scale * q.k`` before the softmax. Scale is ``d ** -0.5`` unless ``qk_scale`` is
given (an explicit ``0.0`` means zero).

Small maps. The op needs ``k * dilation <= H`` and ``<= W``. When the map is smaller (a
*_nano* model's late stages, or DiNA with a large dilation), the module does what the NATTEN
versions DiNAT was trained with (0.14.5-0.15) do: zero-pad the *input* ``x`` on the
bottom/right up to ``k * dilation`` rows/columns, run ``qkv`` on the padded map (so padded
tokens carry ``q = b_q``, ``k = b_k``, ``v = b_v``, not zeros), attend without masking the
padded tokens, crop back to ``H x W``, then ``proj``. The padded tokens therefore take part in
every real query's softmax; the backward pass follows the same path (``F.pad`` and
``F.getitem`` send the gradients back to the real tokens only).

Parameters (official NATTEN names): ``qkv.weight (3C, C)``, ``qkv.bias (3C,)``,
``rpb (heads, 2k-1, 2k-1)``, ``proj.weight (C, C)``, ``proj.bias (C,)``.
"""
from __future__ import annotations

import numpy as np

from refvit import functional as F
from refvit._validate import check_int
from refvit.nn import init
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Linear
from refvit.nn.module import Module
from refvit.nn.parameter import Parameter, resolve_dtype


def _positive_int(where, name, value):
    return check_int(where, name, value, minimum=1)


class NeighborhoodAttention2D(Module):
    """Neighbourhood attention over ``x (B, H, W, dim)`` -> ``(B, H, W, dim)``; see the module docstring.

    ``kernel_size`` is odd; ``dilation=None`` means 1 (as NATTEN). ``bias`` keeps the
    relative positional bias ``rpb`` (``False`` drops it, as NATTEN's ``bias=False``).
    ``attn_drop`` must be 0: the softmax is fused into the op, so there are no attention
    weights to drop (the official DiNAT / NAT models use 0).
    """

    def __init__(self, dim, num_heads, kernel_size, dilation=1, bias=True, qkv_bias=True, qk_scale=None,
                 attn_drop=0.0, proj_drop=0.0, dtype=None):
        super().__init__()
        where = "NeighborhoodAttention2D"
        dim = _positive_int(where, "dim", dim)
        num_heads = _positive_int(where, "num_heads", num_heads)
        if dim % num_heads:
            raise ValueError(f"{where}: 'num_heads' must divide dim ({dim}); got {num_heads}")
        kernel_size = _positive_int(where, "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"{where}: 'kernel_size' must be odd; got {kernel_size}")
        dilation = _positive_int(where, "dilation", 1 if dilation is None else dilation)
        if attn_drop != 0.0:
            raise ValueError(f"{where}: 'attn_drop' must be 0.0 (the softmax is fused into na2d); got {attn_drop!r}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.kernel_size, self.dilation = kernel_size, dilation
        self.window_size = kernel_size * dilation
        # None -> the default; an explicit 0.0 means zero (docs/conventions.md, Numerics), where NATTEN's
        # `qk_scale or ...` would not.
        self.scale = self.head_dim ** -0.5 if qk_scale is None else float(qk_scale)
        dtype = resolve_dtype(dtype)
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias, dtype=dtype)
        if bias:
            self.rpb = Parameter(np.zeros((num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1), dtype))
            init.trunc_normal_(self.rpb, std=0.02)
        else:
            self.register_parameter("rpb", None)
        self.proj = Linear(dim, dim, dtype=dtype)
        self.proj_drop = Dropout(proj_drop)

    def padding(self, height, width):
        """Rows and columns of zeros added at the bottom and right of an ``H x W`` map: ``(pad_h, pad_w)``."""
        return max(0, self.window_size - height), max(0, self.window_size - width)

    def forward(self, x):
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[-1] != self.dim:
            raise ValueError(f"NeighborhoodAttention2D: 'x' must be a (B, H, W, {self.dim}) map; got shape {shape}")
        batch, height, width, _ = shape
        pad_h, pad_w = self.padding(height, width)
        if pad_h or pad_w:
            x = F.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        padded_h, padded_w = height + pad_h, width + pad_w
        q, k, v = (self._split_heads(part, batch, padded_h, padded_w)
                   for part in F.split(self.qkv(x), [self.dim] * 3, axis=-1))
        out = F.na2d(q, k, v, self.kernel_size, dilation=self.dilation, rpb=self.rpb, scale=self.scale)
        out = F.reshape(F.permute(out, (0, 2, 3, 1, 4)), (batch, padded_h, padded_w, self.dim))
        if pad_h or pad_w:
            out = F.getitem(out, (slice(None), slice(0, height), slice(0, width), slice(None)))
        return self.proj_drop(self.proj(out))

    def _split_heads(self, x, batch, height, width):
        """``(B, H, W, heads*d)`` -> ``(B, heads, H, W, d)``: channel ``head*d + j`` is ``[head, ..., j]``."""
        return F.permute(F.reshape(x, (batch, height, width, self.num_heads, self.head_dim)), (0, 3, 1, 2, 4))

    def extra_repr(self):
        return (f"head_dim={self.head_dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, rel_pos_bias={self.rpb is not None}")
