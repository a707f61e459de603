"""``Downsample2d``: halve the map by pooling, then (if the width changes) a 1x1 convolution.

CoAtNet uses it as the shortcut of a stage's first block (``shortcut.pool``, ``shortcut.expand``)
and, inside a transformer block that downsamples, after the first norm (``norm1.down``).
"""
from __future__ import annotations

from refvit.nn.coatnet.pointwise import PointwiseConv2d
from refvit.nn.linear import Identity
from refvit.nn.module import Module
from refvit.nn.pool import AvgPool2d, MaxPool2d

POOL_TYPES = ("avg2", "max2", "max")


class Downsample2d(Module):
    """``x (B, H, W, dim)`` -> ``(B, H', W', dim_out)``.

    ``pool_type``: ``"avg2"`` (average over 2x2 windows, stride 2: CoAtNet's choice), ``"max2"``
    (max over 2x2, stride 2) or ``"max"`` (max over 3x3, stride 2, padding 1). ``expand`` is a
    1x1 convolution ``dim -> dim_out`` (with ``bias``) when the widths differ, else the identity.
    """

    def __init__(self, dim, dim_out, pool_type="avg2", bias=True, dtype=None):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"Downsample2d: 'pool_type' must be one of {', '.join(POOL_TYPES)}; got {pool_type!r}")
        if pool_type == "avg2":
            self.pool = AvgPool2d(2)
        elif pool_type == "max2":
            self.pool = MaxPool2d(2)
        else:
            self.pool = MaxPool2d(3, stride=2, padding=1)
        self.expand = PointwiseConv2d(dim, dim_out, bias=bias, dtype=dtype) if dim != dim_out else Identity()

    def forward(self, x):
        return self.expand(self.pool(x))
