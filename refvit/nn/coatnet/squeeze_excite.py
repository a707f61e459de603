r"""``SqueezeExcite``: channel gating from the mean of the map (SE-Net, timm's ``SEModule``).

On ``x (B, H, W, C)``:

.. math::  s_b = \frac{1}{HW}\sum_{u,v} x_{b,u,v,:}, \qquad
           g_b = \sigma\bigl(W_2\, \mathrm{act}(W_1 s_b + b_1) + b_2\bigr), \qquad
           y_{b,u,v,c} = x_{b,u,v,c}\, g_{b,c}

with ``fc1`` a 1x1 convolution ``C -> rd_channels`` and ``fc2`` back to ``C`` (both with bias),
``act`` SiLU in CoAtNet and :math:`\sigma` the logistic sigmoid, so the gate lies in ``(0, 1)``.
The gradient flows through both factors of the product: into ``x`` directly (times the
gate) and through the gate's mean over the map.
"""
from __future__ import annotations

from refvit import functional as F
from refvit.nn.activation import Sigmoid, SiLU
from refvit.nn.coatnet.pointwise import PointwiseConv2d
from refvit.nn.linear import Identity
from refvit.nn.module import Module


class SqueezeExcite(Module):
    """``x (B, H, W, channels)`` -> same shape, each channel scaled by a gate in ``(0, 1)``.

    Parameters ``fc1.weight (rd_channels, channels, 1, 1)``, ``fc1.bias``, ``fc2.weight
    (channels, rd_channels, 1, 1)``, ``fc2.bias`` (timm's names; ``bn`` is the identity).
    """

    def __init__(self, channels, rd_channels, act_layer=SiLU, dtype=None):
        super().__init__()
        self.fc1 = PointwiseConv2d(channels, rd_channels, bias=True, dtype=dtype)
        self.bn = Identity()
        self.act = act_layer()
        self.fc2 = PointwiseConv2d(rd_channels, channels, bias=True, dtype=dtype)
        self.gate = Sigmoid()

    def gate_values(self, x):
        """The gate ``(B, 1, 1, channels)``: ``sigmoid(fc2(act(fc1(mean_hw(x)))))``."""
        squeezed = F.mean(x, (1, 2), keepdims=True)
        return self.gate(self.fc2(self.act(self.bn(self.fc1(squeezed)))))

    def forward(self, x):
        return F.mul(x, self.gate_values(x))
