"""An op-like wrapper around ``NATLayer``, so a whole NAT / DiNAT layer can be timed as a bench case (and gradchecked).

``forward(x, num_heads, kernel_size, dilation=1, backend=None) -> (out, cache)`` runs the layer (built
once per width, heads, kernel, dilation and dtype, seeded, evaluation mode, MLP ratio 3 as in
DiNAT-Mini) on the tape with ``x`` as a leaf; ``backward(dout, cache) -> (dx,)`` runs
``Tensor.backward``, which calls every op's hand-written backward (parameter gradients are filled as
well). ``backend`` is the backend every op of the layer uses.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit.autograd.tensor import Tensor
from refvit.backend import resolve_backend
from refvit.bench._seeded import built_once
from refvit.nn.nat.layer import NATLayer
from refvit.testing.compare import to_numpy

OP = "dinat_layer"
DIFFERENTIABLE = ("x",)
MLP_RATIO = 3.0
_LAYERS = {}


class Cache(NamedTuple):
    x: Tensor
    out: Tensor
    layer: NATLayer
    backend: str


def layer_for(dim, num_heads, kernel_size, dilation, dtype):
    """The (cached) layer for this configuration and dtype, with seeded parameters."""
    key = (dim, num_heads, kernel_size, dilation, np.dtype(dtype))
    return built_once(_LAYERS, key, lambda: NATLayer(dim, num_heads, kernel_size=kernel_size, dilation=dilation,
                                                     mlp_ratio=MLP_RATIO, dtype=dtype).eval())


def forward(x, num_heads, kernel_size, dilation=1, backend=None):
    """``x (B, H, W, C)`` -> ``(B, H, W, C)`` through a seeded ``NATLayer``."""
    backend = resolve_backend(backend, OP)
    x = Tensor(to_numpy(x), requires_grad=True)
    layer = layer_for(x.shape[3], num_heads, kernel_size, dilation, x.dtype).to(backend)
    out = layer(x)
    return out.data, Cache(x, out, layer, backend)


def backward(dout, cache):
    """``dout`` of the output's shape -> ``(dx,)``."""
    cache.layer.zero_grad()
    cache.out.backward(to_numpy(dout))
    return (cache.x.grad,)


def example(rng):
    return (rng.standard_normal((1, 5, 6, 8)), 2, 3), {"dilation": 2}
