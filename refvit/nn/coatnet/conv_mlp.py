"""``ConvMlp``: timm's MLP made of 1x1 convolutions, ``fc2(drop(act(norm(fc1(x)))))``.

On a channels-last map a 1x1 convolution is a ``Linear`` on the last axis, but the weights
keep the convolution's shape ``(out, in, 1, 1)`` so a timm ``state_dict`` loads as it is.
"""
from __future__ import annotations

from refvit.nn.activation import GELU
from refvit.nn.coatnet.pointwise import PointwiseConv2d
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Identity
from refvit.nn.module import Module


class ConvMlp(Module):
    """``x (B, H, W, in_features)`` -> ``(B, H, W, out_features)`` through ``hidden_features``.

    Parameters ``fc1.weight (hidden, in, 1, 1)``, ``fc1.bias``, ``fc2.weight (out, hidden, 1, 1)``,
    ``fc2.bias``; ``norm`` (after ``fc1``) is the identity unless ``norm_layer`` is given.
    """

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=GELU, norm_layer=None,
                 bias=True, drop=0.0, dtype=None):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = PointwiseConv2d(in_features, hidden_features, bias=bias, dtype=dtype)
        self.norm = norm_layer(hidden_features) if norm_layer is not None else Identity()
        self.act = act_layer()
        self.drop = Dropout(drop)
        self.fc2 = PointwiseConv2d(hidden_features, out_features, bias=bias, dtype=dtype)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.norm(self.fc1(x)))))
