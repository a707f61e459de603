r"""SMT's feed-forward network: ``fc1``, then ``GELU(h + DWConv3x3(h))``, then ``fc2``.

.. math::  h = x W_1^\top + b_1, \qquad y = \mathrm{GELU}(h + \mathrm{DWConv}_{3\times 3}(h))\, W_2^\top + b_2

The depthwise convolution (``dwconv.dwconv``, bias on, padding 1) adds a residual of local
context on the hidden map before the activation. Names as in the official ``Mlp``/``DWConv``:
``fc1``, ``dwconv.dwconv``, ``act``, ``fc2`` (and one ``drop`` used after ``act`` and ``fc2``).
"""
from __future__ import annotations

from refvit.nn.activation import GELU
from refvit.nn.conv import Conv2d
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Linear
from refvit.nn.module import Module


class DWConv(Module):
    """Depthwise 3x3 convolution with bias on ``x (B, H, W, dim)``, the map size kept (``dwconv``)."""

    def __init__(self, dim, dtype=None):
        super().__init__()
        self.dwconv = Conv2d(dim, dim, 3, stride=1, padding=1, groups=dim, bias=True, dtype=dtype)

    def forward(self, x):
        return self.dwconv(x)


class DWConvMlp(Module):
    """``x (B, H, W, in_features)`` -> ``(B, H, W, out_features)`` through ``hidden_features``."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=GELU, drop=0.0, dtype=None):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = Linear(in_features, hidden_features, dtype=dtype)
        self.dwconv = DWConv(hidden_features, dtype=dtype)
        self.act = act_layer()
        self.fc2 = Linear(hidden_features, out_features, dtype=dtype)
        self.drop = Dropout(drop)

    def forward(self, x):
        hidden = self.fc1(x)
        hidden = self.drop(self.act(hidden + self.dwconv(hidden)))
        return self.drop(self.fc2(hidden))
