"""``AvgPool2d`` and ``MaxPool2d`` on channels-last feature maps ``(B, H, W, C)``."""
from __future__ import annotations

from refvit import functional as F
from refvit._validate import as_tuple, fail
from refvit.nn.module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        owner = type(self).__name__
        kernel = as_tuple(owner, "kernel_size", kernel_size, 2, minimum=1)
        if stride is not None:
            as_tuple(owner, "stride", stride, 2, minimum=1)
        pad = as_tuple(owner, "padding", padding, 2, minimum=0)
        if any(p > k // 2 for p, k in zip(pad, kernel)):
            fail(owner, "padding", f"at most half the kernel {kernel}", padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool2d):
    """Average over ``kernel_size`` windows (``stride`` defaults to the kernel), zero padding counted."""

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)


class MaxPool2d(_Pool2d):
    """Maximum over ``kernel_size`` windows (``stride`` defaults to the kernel)."""

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)
