"""Activation modules: ``GELU``, ``ReLU``, ``SiLU``, ``Sigmoid``, ``Tanh``, ``Softmax``."""
from __future__ import annotations

from refvit import functional as F
from refvit._validate import check_choice, check_int
from refvit.nn.module import Module


class GELU(Module):
    """Exact (erf) GELU, or the tanh approximation with ``approximate="tanh"``."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = check_choice("GELU", "approximate", approximate, ("none", "tanh"))

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    """``max(x, 0)``. ``inplace`` is accepted for PyTorch compatibility and ignored."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class SiLU(Module):
    """``x * sigmoid(x)``. ``inplace`` is accepted and ignored."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.silu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    """Softmax along ``dim`` (PyTorch's name for the axis; default the last)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = check_int("Softmax", "dim", dim)

    def forward(self, x):
        return F.softmax(x, axis=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"
