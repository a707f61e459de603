"""An op-like wrapper around ``CSWinBlock``, so a whole block can be timed as a bench case (and gradchecked).

``forward(x, num_heads, split_size, last_stage=False, backend=None) -> (out, cache)`` runs the block
(built once per width, heads, split, branch count and dtype, seeded, evaluation mode, ``qkv`` with
bias as in the models) on the tape with ``x`` as a leaf; ``backward(dout, cache) -> (dx,)`` runs
``Tensor.backward``, which calls every op's hand-written backward (parameter gradients are filled
as well). ``backend`` is the backend every op of the block uses.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit.autograd.tensor import Tensor
from refvit.backend import resolve_backend
from refvit.bench._seeded import built_once
from refvit.nn.cswin.block import CSWinBlock
from refvit.testing.compare import to_numpy

OP = "cswin_block"
DIFFERENTIABLE = ("x",)
_BLOCKS = {}


class Cache(NamedTuple):
    x: Tensor
    out: Tensor
    block: CSWinBlock
    backend: str


def block_for(dim, num_heads, split_size, last_stage, dtype):
    """The (cached) block for this configuration and dtype, with seeded parameters."""
    key = (dim, num_heads, split_size, bool(last_stage), np.dtype(dtype))
    return built_once(_BLOCKS, key, lambda: CSWinBlock(dim, num_heads, split_size=split_size, qkv_bias=True,
                                                       last_stage=last_stage, dtype=dtype).eval())


def forward(x, num_heads, split_size, last_stage=False, backend=None):
    """``x (B, H, W, C)`` -> ``(B, H, W, C)`` through a seeded ``CSWinBlock``."""
    backend = resolve_backend(backend, OP)
    x = Tensor(to_numpy(x), requires_grad=True)
    block = block_for(x.shape[3], num_heads, split_size, last_stage, x.dtype).to(backend)
    out = block(x)
    return out.data, Cache(x, out, block, backend)


def backward(dout, cache):
    """``dout`` of the output's shape -> ``(dx,)``."""
    cache.block.zero_grad()
    cache.out.backward(to_numpy(dout))
    return (cache.x.grad,)


def example(rng):
    return (rng.standard_normal((1, 4, 4, 8)), 2, 2), {}
