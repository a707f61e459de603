"""``Linear`` and ``Identity``."""
from __future__ import annotations

import numpy as np

from refvit import functional as F
from refvit._validate import check_int
from refvit.nn import init
from refvit.nn.module import Module
from refvit.nn.parameter import Parameter, resolve_dtype


class Identity(Module):
    """Returns its input unchanged (any arguments to the constructor are ignored, as in PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """``y = x W^T + b``: ``x (..., in_features)`` -> ``(..., out_features)``.

    Parameters ``weight (out_features, in_features)`` and ``bias (out_features,)``, both
    :math:`U(-1/\\sqrt{in}, 1/\\sqrt{in})` at first, as in PyTorch.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, minimum=0)
        self.out_features = check_int("Linear", "out_features", out_features, minimum=0)
        dtype = resolve_dtype(dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=5.0 ** 0.5)
        if self.bias is not None:
            init.default_bias_(self.bias, self.in_features)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
