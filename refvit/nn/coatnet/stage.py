"""``CoAtNetStage``: one stage of CoAtNet, a ``blocks`` sequence of MBConv or transformer blocks.

The first block takes the stage's stride (2 in every CoAtNet stage) and the width change;
the rest keep the shape. ``block_type`` ``"C"`` builds :class:`MbConvBlock` s, ``"T"``
:class:`TransformerBlock2d` s whose relative-position tables cover ``feat_size``, the map
size after the stride. Keys ``blocks.<i>.*`` as in timm's ``MaxxVitStage``.
"""
from __future__ import annotations

from refvit.nn.coatnet.mbconv import MbConvBlock
from refvit.nn.coatnet.transformer import TransformerBlock2d
from refvit.nn.container import Sequential
from refvit.nn.module import Module

BLOCK_TYPES = ("C", "T")


class CoAtNetStage(Module):
    """``x (B, H, W, in_chs)`` -> ``(B, feat_size[0], feat_size[1], out_chs)``.

    ``drop_path`` is one rate or one per block; ``conv_kwargs``/``transformer_kwargs`` go to
    the block constructors (e.g. ``expand_ratio``, ``dim_head``).
    """

    def __init__(self, in_chs, out_chs, depth, block_type, feat_size, stride=2, drop_path=0.0, conv_kwargs=None,
                 transformer_kwargs=None, dtype=None):
        super().__init__()
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"CoAtNetStage: 'block_type' must be 'C' (MBConv) or 'T' (transformer); "
                             f"got {block_type!r}")
        rates = list(drop_path) if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        if len(rates) != depth:
            raise ValueError(f"CoAtNetStage: 'drop_path' must be one rate or {depth} rates; got {len(rates)}")
        blocks = []
        for index in range(depth):
            block_stride = stride if index == 0 else 1
            if block_type == "C":
                blocks.append(MbConvBlock(in_chs, out_chs, stride=block_stride, drop_path=rates[index], dtype=dtype,
                                          **(conv_kwargs or {})))
            else:
                blocks.append(TransformerBlock2d(in_chs, out_chs, feat_size, stride=block_stride,
                                                 drop_path=rates[index], dtype=dtype, **(transformer_kwargs or {})))
            in_chs = out_chs
        self.blocks = Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)
