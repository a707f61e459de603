"""An op-like wrapper around CoAtNet's ``MbConvBlock``, so a whole block can be timed as a bench case.

``forward(x, out_chs, stride=1, backend=None) -> (out, cache)`` runs the block (built once per
shape and dtype, seeded, evaluation mode) on the tape with ``x`` as a leaf; ``backward(dout,
cache) -> (dx,)`` runs ``Tensor.backward``, which calls every op's hand-written backward
(parameter gradients are filled as well). ``backend`` is the backend every op of the block uses.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit.autograd.tensor import Tensor
from refvit.backend import resolve_backend
from refvit.bench._seeded import built_once
from refvit.nn.coatnet.mbconv import MbConvBlock
from refvit.testing.compare import to_numpy

OP = "coatnet_mbconv"
DIFFERENTIABLE = ("x",)
_BLOCKS = {}


class Cache(NamedTuple):
    x: Tensor
    out: Tensor
    block: MbConvBlock
    backend: str


def block_for(in_chs, out_chs, stride, dtype):
    """The (cached) block for these widths, stride and dtype, with seeded parameters."""
    key = (in_chs, out_chs, stride, np.dtype(dtype))
    return built_once(_BLOCKS, key, lambda: MbConvBlock(in_chs, out_chs, stride=stride, dtype=dtype).eval())


def forward(x, out_chs, stride=1, backend=None):
    """``x (B, H, W, C_in)`` -> ``(B, H/stride, W/stride, out_chs)`` through a seeded ``MbConvBlock``."""
    backend = resolve_backend(backend, OP)
    x = Tensor(to_numpy(x), requires_grad=True)
    block = block_for(x.shape[3], out_chs, stride, x.dtype).to(backend)
    out = block(x)
    return out.data, Cache(x, out, block, backend)


def backward(dout, cache):
    """``dout`` of the output's shape -> ``(dx,)``."""
    cache.block.zero_grad()
    cache.out.backward(to_numpy(dout))
    return (cache.x.grad,)


def example(rng):
    return (rng.standard_normal((2, 4, 4, 8)),), {"out_chs": 8}
