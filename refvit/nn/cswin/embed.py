r"""CSWin's convolutional token embedding (the stem) and ``MergeBlock`` (the downsampler between stages).

* Stem ``stage1_conv_embed``: ``Conv2d(in_chans, C, 7, stride 4, padding 2)``, then ``LayerNorm(C)``:
  ``(B, H, W, in_chans) -> (B, H', W', C)`` with ``H' = (H + 4 - 7) // 4 + 1`` (56 at 224).
  Its children are ``0`` (conv), ``1`` and ``2`` (LayerNorm), as the official ``Sequential``
  whose entry ``1`` flattens the ``(B, C, H, W)`` map to ``(B, HW, C)`` tokens; on channels-last
  maps that step moves nothing, so entry ``1`` is an ``Identity`` and the keys stay
  ``stage1_conv_embed.0.*`` and ``stage1_conv_embed.2.*``.
* ``MergeBlock`` (official ``Merge_Block``): ``conv`` = ``Conv2d(C, C_out, 3, stride 2, padding 1)``,
  ``norm`` = ``LayerNorm(C_out)``: ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C_out)``.
"""
from __future__ import annotations

from refvit.nn.container import Sequential
from refvit.nn.conv import Conv2d
from refvit.nn.linear import Identity
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


def conv_embed(in_chans, embed_dim, dtype=None):
    """The stem: ``Sequential(Conv2d 7x7 stride 4 padding 2, Identity, LayerNorm)``."""
    return Sequential(Conv2d(in_chans, embed_dim, 7, stride=4, padding=2, dtype=dtype), Identity(),
                      LayerNorm(embed_dim, dtype=dtype))


class MergeBlock(Module):
    """``x (B, H, W, dim)`` -> ``norm(conv(x))`` of shape ``(B, ceil(H/2), ceil(W/2), dim_out)``."""

    def __init__(self, dim, dim_out, dtype=None):
        super().__init__()
        self.conv = Conv2d(dim, dim_out, 3, stride=2, padding=1, dtype=dtype)
        self.norm = LayerNorm(dim_out, dtype=dtype)

    def forward(self, x):
        return self.norm(self.conv(x))
