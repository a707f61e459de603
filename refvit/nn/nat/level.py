r"""``NATBlock``: one level of NAT / DiNAT, ``depth`` layers at one resolution, then a downsampler.

``blocks.i`` is a :class:`~refvit.nn.nat.NATLayer` with dilation ``dilations[i]`` (all 1 for NAT;
DiNAT alternates plain NA and DiNA, starting with NA); ``downsample`` is a
:class:`~refvit.nn.nat.ConvDownsampler` (``C -> 2C``, map halved) on every level but the last,
where it is ``None`` and has no keys, as in the official code.
"""
from __future__ import annotations

from refvit.nn.container import ModuleList
from refvit.nn.module import Module
from refvit.nn.nat.embed import ConvDownsampler
from refvit.nn.nat.layer import NATLayer
from refvit.nn.norm import LayerNorm


class NATBlock(Module):
    """``(B, H, W, dim)`` -> ``(B, H/2, W/2, 2*dim)`` (or ``(B, H, W, dim)`` without ``downsample``).

    ``drop_path`` is one rate or a list with one rate per layer; ``dilations`` is ``None``
    (all 1) or one dilation per layer.
    """

    def __init__(self, dim, depth, num_heads, kernel_size, *, dilations=None, downsample=True, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0, norm_layer=LayerNorm,
                 layer_scale=None, dtype=None):
        super().__init__()
        if dilations is not None and len(dilations) != depth:
            raise ValueError(f"NATBlock: 'dilations' must have one entry per layer ({depth}); got {list(dilations)}")
        rates = list(drop_path) if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        if len(rates) != depth:
            raise ValueError(f"NATBlock: 'drop_path' must be one rate or one per layer ({depth}); got {rates}")
        self.dim, self.depth = int(dim), int(depth)
        self.blocks = ModuleList([
            NATLayer(dim, num_heads, kernel_size=kernel_size, dilation=None if dilations is None else dilations[i],
                     mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop, attn_drop=attn_drop,
                     drop_path=rates[i], norm_layer=norm_layer, layer_scale=layer_scale, dtype=dtype)
            for i in range(depth)])
        self.downsample = ConvDownsampler(dim, norm_layer=norm_layer, dtype=dtype) if downsample else None

    def forward(self, x):
        for layer in self.blocks:
            x = layer(x)
        return x if self.downsample is None else self.downsample(x)

    def extra_repr(self):
        return f"dim={self.dim}, depth={self.depth}"
