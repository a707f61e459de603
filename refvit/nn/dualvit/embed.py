r"""DualViT's patch embeddings, on channels-last maps, with the official names.

* :class:`Stem` (stage 1, map ``/4``): ``conv`` = three convolutions without bias, each followed by
  BatchNorm and ReLU (``conv.0`` 7x7 stride 2 padding 3 ``in -> hidden``, ``conv.3`` and ``conv.6``
  3x3 stride 1 padding 1 ``hidden -> hidden``), then ``proj`` = 3x3 stride 2 padding 1 with bias
  ``hidden -> C`` and ``norm`` = ``LayerNorm(C)`` (eps 1e-5).
* :class:`DownSamples` (stages 2-4, map ``/2``): ``proj`` = 3x3 stride 2 padding 1 with bias,
  ``norm`` = ``LayerNorm(C_out)`` (eps 1e-5).

Both take ``(B, H, W, C_in)`` and return ``(B, H', W', C_out)``; the official modules return
the same values flattened to ``(B, H' W', C_out)`` with ``H', W'``.
"""
from __future__ import annotations

from refvit.nn.activation import ReLU
from refvit.nn.container import Sequential
from refvit.nn.conv import Conv2d
from refvit.nn.module import Module
from refvit.nn.norm import BatchNorm2d, LayerNorm


class Stem(Module):
    """``(B, H, W, in_channels)`` -> ``(B, H/4, W/4, out_channels)``."""

    def __init__(self, in_channels, stem_hidden_dim, out_channels, dtype=None):
        super().__init__()
        hidden = stem_hidden_dim
        self.conv = Sequential(
            Conv2d(in_channels, hidden, 7, stride=2, padding=3, bias=False, dtype=dtype),
            BatchNorm2d(hidden, dtype=dtype),
            ReLU(),
            Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False, dtype=dtype),
            BatchNorm2d(hidden, dtype=dtype),
            ReLU(),
            Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False, dtype=dtype),
            BatchNorm2d(hidden, dtype=dtype),
            ReLU(),
        )
        self.proj = Conv2d(hidden, out_channels, 3, stride=2, padding=1, dtype=dtype)
        self.norm = LayerNorm(out_channels, dtype=dtype)

    def forward(self, x):
        return self.norm(self.proj(self.conv(x)))


class DownSamples(Module):
    """``(B, H, W, in_channels)`` -> ``(B, ceil(H/2), ceil(W/2), out_channels)``."""

    def __init__(self, in_channels, out_channels, dtype=None):
        super().__init__()
        self.proj = Conv2d(in_channels, out_channels, 3, stride=2, padding=1, dtype=dtype)
        self.norm = LayerNorm(out_channels, dtype=dtype)

    def forward(self, x):
        return self.norm(self.proj(x))
