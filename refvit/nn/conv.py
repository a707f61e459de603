"""``Conv2d`` on channels-last feature maps."""
from __future__ import annotations

import numbers

import numpy as np

from refvit import functional as F
from refvit._validate import as_tuple, check_int
from refvit.nn import init
from refvit.nn.module import Module
from refvit.nn.parameter import Parameter, resolve_dtype


def _pair(name, value, minimum):
    ok = isinstance(value, numbers.Integral) or (
        isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, numbers.Integral) for v in value))
    if not ok:
        raise TypeError(f"Conv2d: '{name}' must be an integer or a pair of integers; got {value!r}")
    return as_tuple("Conv2d", name, value, 2, minimum=minimum)


class Conv2d(Module):
    """2-D convolution: ``x (B, H, W, in_channels)`` -> ``(B, H', W', out_channels)``.

    ``weight (out_channels, in_channels / groups, kh, kw)`` and ``bias (out_channels,)``
    have PyTorch's shapes and default initialisation; only the input and output are
    channels-last. ``H' = (H + 2 p - d (kh - 1) - 1) // s + 1``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=None):
        super().__init__()
        in_channels = check_int("Conv2d", "in_channels", in_channels, minimum=1)
        out_channels = check_int("Conv2d", "out_channels", out_channels, minimum=1)
        groups = check_int("Conv2d", "groups", groups)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: 'groups' must divide in_channels ({in_channels}) and out_channels "
                             f"({out_channels}); got {groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        dtype = resolve_dtype(dtype)
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=5.0 ** 0.5)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight.shape)
            init.default_bias_(self.bias, fan_in)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
