r"""DualViT's feed-forward networks, with the official names.

* :class:`DWConv`: depthwise 3x3 convolution (bias, padding 1) of a token sequence read as an
  ``H x W`` map (``dwconv``).
* :class:`PVT2FFN` (pixel tokens of a :class:`DualBlock`): ``fc1``, ``dwconv``, GELU, ``fc2``,

  .. math::  y = \mathrm{GELU}(\mathrm{DWConv}_{3\times 3}(x W_1^\top + b_1))\, W_2^\top + b_2

  (the convolution *replaces* the hidden map; there is no residual around it). With
  ``dwconv=False`` the convolution is left out, which makes the network act on each token alone.
* :class:`MergeFFN` (a :class:`MergeBlock`): the sequence ``[pixels; semantic tokens]`` is cut at
  ``H W``; pixels go through the PVT2FFN path, semantic tokens through ``fc_proxy`` =
  ``Linear(C, 2C)``, GELU, ``Linear(2C, C)``; the two results are concatenated again.
* :class:`FFN` (the class-attention head): ``fc1``, GELU, ``fc2``.

Tokens are ``(B, N, C)``; GELU is exact (erf).
"""
from __future__ import annotations

from refvit import functional as F
from refvit.nn.activation import GELU
from refvit.nn.container import Sequential
from refvit.nn.conv import Conv2d
from refvit.nn.linear import Linear
from refvit.nn.module import Module
from refvit.nn.dualvit.tokens import map_to_tokens, tokens_to_map


class DWConv(Module):
    """``x (B, H W, C)`` -> ``(B, H W, C)``: depthwise 3x3 convolution on the ``H x W`` map."""

    def __init__(self, dim, dtype=None):
        super().__init__()
        self.dwconv = Conv2d(dim, dim, 3, stride=1, padding=1, groups=dim, bias=True, dtype=dtype)

    def forward(self, x, height, width):
        return map_to_tokens(self.dwconv(tokens_to_map(x, height, width)))


class PVT2FFN(Module):
    """``x (B, H W, C)`` -> ``(B, H W, C)`` through ``hidden_features``: fc1, dwconv, GELU, fc2."""

    def __init__(self, in_features, hidden_features, dwconv=True, dtype=None):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features, dtype=dtype)
        self.dwconv = DWConv(hidden_features, dtype=dtype) if dwconv else None
        self.act = GELU()
        self.fc2 = Linear(hidden_features, in_features, dtype=dtype)

    def forward(self, x, height, width):
        hidden = self.fc1(x)
        if self.dwconv is not None:
            hidden = self.dwconv(hidden, height, width)
        return self.fc2(self.act(hidden))


class MergeFFN(Module):
    """``x (B, H W + M, C)`` -> same shape: PVT2FFN on the first ``H W`` tokens, ``fc_proxy`` on the rest."""

    def __init__(self, in_features, hidden_features, dtype=None):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features, dtype=dtype)
        self.dwconv = DWConv(hidden_features, dtype=dtype)
        self.act = GELU()
        self.fc2 = Linear(hidden_features, in_features, dtype=dtype)
        self.fc_proxy = Sequential(
            Linear(in_features, 2 * in_features, dtype=dtype),
            GELU(),
            Linear(2 * in_features, in_features, dtype=dtype),
        )

    def forward(self, x, height, width):
        pixels = height * width
        pixel_tokens, semantics = F.split(x, [pixels, tuple(x.shape)[1] - pixels], axis=1)
        semantics = self.fc_proxy(semantics)
        pixel_tokens = self.fc2(self.act(self.dwconv(self.fc1(pixel_tokens), height, width)))
        return F.concatenate([pixel_tokens, semantics], axis=1)


class FFN(Module):
    """``x (..., C)`` -> ``(..., C)``: fc1, GELU, fc2."""

    def __init__(self, in_features, hidden_features, dtype=None):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features, dtype=dtype)
        self.act = GELU()
        self.fc2 = Linear(hidden_features, in_features, dtype=dtype)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
