"""``CoAtNetStem``: two 3x3 convolutions, the first with stride 2 (timm's ``Stem``, stage S0).

``x (B, H, W, in_chs)`` -> ``conv1`` (3x3, stride 2, padding 1, no bias) -> ``norm1``
(BatchNorm + GELU) -> ``conv2`` (3x3, stride 1, padding 1, no bias) -> ``(B, H/2, W/2, out_chs[1])``.
"""
from __future__ import annotations

from refvit.nn.activation import GELU
from refvit.nn.coatnet.norm_act import BatchNormAct2d
from refvit.nn.conv import Conv2d
from refvit.nn.module import Module


class CoAtNetStem(Module):
    """``out_chs`` is one width or a pair ``(after conv1, after conv2)``."""

    def __init__(self, in_chs, out_chs, kernel_size=3, bias=False, act_layer=GELU, norm_eps=1e-5, dtype=None):
        super().__init__()
        out_chs = tuple(out_chs) if isinstance(out_chs, (tuple, list)) else (out_chs, out_chs)
        self.out_chs, self.stride = out_chs[-1], 2
        padding = ((2 - 1) + (kernel_size - 1)) // 2  # timm's symmetric padding for a stride-2 conv
        self.conv1 = Conv2d(in_chs, out_chs[0], kernel_size, stride=2, padding=padding, bias=bias, dtype=dtype)
        self.norm1 = BatchNormAct2d(out_chs[0], eps=norm_eps, act_layer=act_layer, dtype=dtype)
        self.conv2 = Conv2d(out_chs[0], out_chs[1], kernel_size, stride=1, padding=(kernel_size - 1) // 2,
                            bias=bias, dtype=dtype)

    def forward(self, x):
        return self.conv2(self.norm1(self.conv1(x)))
