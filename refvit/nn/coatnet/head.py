r"""``NormMlpClassifierHead``: average pool, LayerNorm, a tanh hidden layer, then the classifier.

.. math::  z = \mathrm{LN}\Bigl(\frac{1}{HW}\sum_{u,v} x_{:,u,v,:}\Bigr), \qquad
           \text{logits} = W_{fc}\, \tanh(W_{pre} z + b_{pre}) + b_{fc}

Parameters ``norm.*`` (eps 1e-6 in CoAtNet), ``pre_logits.fc.*``, ``fc.*`` as in timm.
"""
from __future__ import annotations

from collections import OrderedDict

from refvit import functional as F
from refvit.nn.activation import Tanh
from refvit.nn.container import Sequential
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


class NormMlpClassifierHead(Module):
    """``x (B, H, W, in_features)`` -> logits ``(B, num_classes)``; ``hidden_size=None`` drops the tanh layer."""

    def __init__(self, in_features, num_classes, hidden_size=None, drop_rate=0.0, norm_eps=1e-6, act_layer=Tanh,
                 dtype=None):
        super().__init__()
        self.in_features, self.hidden_size = in_features, hidden_size
        self.norm = LayerNorm(in_features, eps=norm_eps, dtype=dtype)
        if hidden_size:
            self.pre_logits = Sequential(OrderedDict([
                ("fc", Linear(in_features, hidden_size, dtype=dtype)),
                ("act", act_layer()),
            ]))
        else:
            self.pre_logits = Identity()
        self.num_features = hidden_size or in_features
        self.drop = Dropout(drop_rate)
        self.fc = Linear(self.num_features, num_classes, dtype=dtype) if num_classes > 0 else Identity()

    def forward(self, x, pre_logits=False):
        x = self.drop(self.pre_logits(self.norm(F.mean(x, (1, 2)))))
        return x if pre_logits else self.fc(x)
