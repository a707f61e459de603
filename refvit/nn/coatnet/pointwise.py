"""``PointwiseConv2d``: a 1x1 convolution with ``Conv2d``'s parameters, run as a ``Linear``.

On a channels-last map ``x (B, H, W, C_in)`` a 1x1 convolution (stride 1, no padding, one
group) is ``x @ W^T + b`` over the last axis, with ``W = weight.reshape(C_out, C_in)``. The
weight keeps the convolution's shape ``(C_out, C_in, 1, 1)`` (so PyTorch ``state_dict`` s load
as they are); the forward reshapes it on the tape and calls ``ops.linear``, which skips the
patch gathering of the general convolution kernels. The gradient of the reshape is the
reshape back, so ``weight.grad`` has the convolution's shape.
"""
from __future__ import annotations

from refvit import functional as F
from refvit.nn.conv import Conv2d


class PointwiseConv2d(Conv2d):
    """``Conv2d(in_channels, out_channels, 1, bias=bias)`` computed by ``ops.linear``."""

    def __init__(self, in_channels, out_channels, bias=True, dtype=None):
        super().__init__(in_channels, out_channels, 1, bias=bias, dtype=dtype)

    def forward(self, x):
        weight = F.reshape(self.weight, (self.out_channels, self.in_channels))
        return F.linear(x, weight, self.bias)
