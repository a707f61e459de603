r"""A DualViT block called like an op: ``forward(x, semantics, parameters, block, height, width)``.

It lets the op tooling (``refvit.testing.gradcheck``/``check_vjp``, the benchmark timer) treat a
:class:`~refvit.nn.dualvit.DualBlock` or :class:`~refvit.nn.dualvit.MergeBlock` as one function of
arrays. Shapes: ``x (B, H W, C)`` pixel tokens, ``semantics (B, m, C)`` semantic tokens,
``parameters`` a tuple of arrays in ``block.parameters()`` order (``None``: keep the block's own)
-> ``(x', semantics')`` of the same shapes. A MergeBlock runs on ``[x; semantics]`` and its output
is cut back into the two parts.

``backward((dx', dsemantics'), cache) -> (dx, dsemantics, dparameters)``: the tape runs the ops'
own backward functions from the block's output (the two outputs joined by ``concatenate``, whose
backward cuts the upstream gradient back apart), so nothing here differentiates anything itself.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit import functional as F
from refvit.autograd import Tensor
from refvit.backend import resolve_backend, use_backend
from refvit.nn.dualvit import MergeBlock

OP = "dualvit_block"
DIFFERENTIABLE = ("x", "semantics", "parameters")


class Cache(NamedTuple):
    joined: Tensor          # [x'; semantics'] (B, n + m, C), on the tape
    inputs: tuple           # the x and semantics leaves
    parameters: tuple       # the block's Parameters
    backend: str


def _run(block, x, semantics, height, width):
    if isinstance(block, MergeBlock):
        return block(F.concatenate([x, semantics], axis=1), height, width)
    out, new_semantics = block(x, height, width, semantics)
    return F.concatenate([out, new_semantics], axis=1)


def forward(x, semantics, parameters=None, block=None, height=None, width=None, backend=None):
    """``-> ((x' (B, n, C), semantics' (B, m, C)), cache)``; ``height * width`` must be ``n``."""
    backend = resolve_backend(backend, OP)
    if block is None or height is None or width is None or height * width != x.shape[1]:
        raise ValueError(f"{OP}: 'block', 'height', 'width' must be given with height * width = {x.shape[1]} "
                         f"pixel tokens; got block {type(block).__name__}, height {height!r}, width {width!r}")
    params = tuple(block.parameters())
    if parameters is not None:
        for parameter, value in zip(params, parameters, strict=True):
            parameter.data = np.ascontiguousarray(value, dtype=x.dtype)
    inputs = (Tensor(x, requires_grad=True), Tensor(semantics, requires_grad=True))
    with use_backend(backend):
        joined = _run(block, *inputs, height, width)
    pixels = x.shape[1]
    return (joined.data[:, :pixels], joined.data[:, pixels:]), Cache(joined, inputs, params, backend)


def backward(dout, cache):
    """``(dx', dsemantics') -> (dx, dsemantics, dparameters)`` through the tape."""
    for tensor in cache.inputs + cache.parameters:
        tensor.grad = None
    with use_backend(cache.backend):
        cache.joined.backward(np.concatenate([np.asarray(d) for d in dout], axis=1))
    zeros = [np.zeros_like(p.data) if p.grad is None else p.grad for p in cache.parameters]
    return cache.inputs[0].grad, cache.inputs[1].grad, tuple(zeros)


def example(rng):
    """A small float64 DualBlock (two heads, layer scales of 0.5) on a 2x3 map with 2 semantic tokens."""
    from refvit.nn.dualvit import DualBlock

    block = DualBlock(4, 2, 2.0, layer_scale_init_value=0.5, dtype=np.float64)
    x, semantics = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 2, 4))
    return (x, semantics), dict(block=block, height=2, width=3)
