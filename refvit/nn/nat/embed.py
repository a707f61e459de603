r"""The convolutional parts of NAT / DiNAT: ``ConvTokenizer`` (the stem) and ``ConvDownsampler``.

Both take and return channels-last maps; their convolutions keep PyTorch's weight shapes.

``ConvTokenizer`` on an image ``(B, H, W, in_chans)``:
``proj.0`` conv 3x3 stride 2 pad 1 (``in_chans -> C/2``), ``proj.1`` conv 3x3 stride 2 pad 1
(``C/2 -> C``), no activation between, then ``norm`` (LayerNorm over ``C``): ``(B, H/4, W/4, C)``
(sizes round up: ``ceil(H/4)``).

``ConvDownsampler`` between levels on ``(B, H, W, C)``: ``reduction`` conv 3x3 stride 2 pad 1
(``C -> 2C``, no bias), then ``norm`` (LayerNorm over ``2C``): ``(B, ceil(H/2), ceil(W/2), 2C)``.
"""
from __future__ import annotations

from refvit.nn.container import Sequential
from refvit.nn.conv import Conv2d
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


class ConvTokenizer(Module):
    """Image ``(B, H, W, in_chans)`` -> tokens ``(B, H/4, W/4, embed_dim)``; ``norm_layer=None`` skips the norm."""

    def __init__(self, in_chans=3, embed_dim=96, norm_layer=None, dtype=None):
        super().__init__()
        if embed_dim < 2 or embed_dim % 2:
            raise ValueError(f"ConvTokenizer: 'embed_dim' must be an even integer >= 2; got {embed_dim!r}")
        self.proj = Sequential(
            Conv2d(in_chans, embed_dim // 2, 3, stride=2, padding=1, dtype=dtype),
            Conv2d(embed_dim // 2, embed_dim, 3, stride=2, padding=1, dtype=dtype),
        )
        self.norm = norm_layer(embed_dim, dtype=dtype) if norm_layer is not None else None

    def forward(self, x):
        x = self.proj(x)
        return x if self.norm is None else self.norm(x)


class ConvDownsampler(Module):
    """``(B, H, W, dim)`` -> ``(B, ceil(H/2), ceil(W/2), 2*dim)``: strided 3x3 conv without bias, then LayerNorm."""

    def __init__(self, dim, norm_layer=LayerNorm, dtype=None):
        super().__init__()
        self.reduction = Conv2d(dim, 2 * dim, 3, stride=2, padding=1, bias=False, dtype=dtype)
        self.norm = norm_layer(2 * dim, dtype=dtype)

    def forward(self, x):
        return self.norm(self.reduction(x))
