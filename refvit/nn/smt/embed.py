r"""SMT's patch embeddings: the convolutional stem of stage 1 and the overlapping downsampler of stages 2-4.

* :class:`ConvStem` (the official ``Head``): ``conv.0`` = ``Conv2d(in, dim, head_conv, stride 2)``
  without bias (padding 1 for a 3x3 kernel, 3 for 7x7), ``conv.1`` = ``BatchNorm2d``, ``conv.2`` =
  ReLU, ``conv.3`` = ``Conv2d(dim, dim, 2, stride 2)`` with bias, then ``norm`` = ``LayerNorm(dim)``
  with eps ``1e-5`` (PyTorch's default; only the block and stage norms use ``1e-6``). Map ``/4``.
* :class:`OverlapPatchEmbed`: ``proj`` = ``Conv2d(in, dim, patch_size, stride, padding=patch_size // 2)``
  with bias, ``norm`` = ``LayerNorm(dim)`` (eps ``1e-5``). Map ``/stride``.

Both take and return channels-last maps: ``(B, H, W, C_in)`` -> ``(B, H', W', dim)``.
"""
from __future__ import annotations

from refvit.nn.activation import ReLU
from refvit.nn.container import Sequential
from refvit.nn.conv import Conv2d
from refvit.nn.module import Module
from refvit.nn.norm import BatchNorm2d, LayerNorm


class ConvStem(Module):
    """The stage-1 stem (official name ``Head``): conv, BN, ReLU, 2x2 stride-2 conv, LayerNorm."""

    def __init__(self, head_conv, dim, in_chans=3, dtype=None):
        super().__init__()
        if head_conv not in (3, 7):
            raise ValueError(f"ConvStem: 'head_conv' must be 3 or 7 (the stem's first kernel); got {head_conv!r}")
        self.conv = Sequential(
            Conv2d(in_chans, dim, head_conv, stride=2, padding=3 if head_conv == 7 else 1, bias=False, dtype=dtype),
            BatchNorm2d(dim, dtype=dtype),
            ReLU(),
            Conv2d(dim, dim, 2, stride=2, dtype=dtype),
        )
        self.norm = LayerNorm(dim, dtype=dtype)

    def forward(self, x):
        return self.norm(self.conv(x))


class OverlapPatchEmbed(Module):
    """Overlapping patch embedding: ``proj`` (a strided convolution) then ``norm`` (LayerNorm)."""

    def __init__(self, patch_size=3, stride=2, in_chans=3, embed_dim=768, dtype=None):
        super().__init__()
        self.proj = Conv2d(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2, dtype=dtype)
        self.norm = LayerNorm(embed_dim, dtype=dtype)

    def forward(self, x):
        return self.norm(self.proj(x))
