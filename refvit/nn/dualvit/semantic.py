r"""Semantic tokens: their initialisation from the stem output, and their embedding between stages.

**Initialisation** (stage 1; the parts sit on the model itself in the official code, so their
keys are ``q``, ``q_embed.0/1``, ``kv``, ``proxy_ln``, ``se.0/2``). On the stem output
``x (B, H, W, C)``:

1. ``x_down = AvgPool(pool_size, stride pool_size)(x)`` read as ``m`` tokens ``(B, m, C)``
   (an ``8 x 8`` grid at 224: 56 / 7).
2. Learnable queries ``q (m, C)`` (truncated normal, std 0.02) pass through ``q_embed`` =
   LayerNorm + Linear; single-head attention over ``[k | v] = kv(x_down)`` with scale
   :math:`C^{-1/2}`: :math:`S_0 = \mathrm{softmax}(\text{scale}\; \mathrm{q\_embed}(q) K^\top) V`.
3. Two-way fusion: :math:`w = \mathrm{softmax}_2(\mathrm{se}(\mathrm{mean}_m(S_0 + x_{down})))`
   with ``se`` = ``Linear(C, C)``, ReLU, ``Linear(C, 2C)`` read as ``(B, 2, C)`` and the softmax
   taken over the 2 (per channel); :math:`S = \mathrm{LN}(w_0 \odot S_0 + w_1 \odot x_{down})`
   (``proxy_ln``).

When the pooled grid does not hold ``m`` tokens (another image size), the official code resizes
the queries, read as a square ``g x g x C`` grid, to the pooled grid with PyTorch's bicubic
interpolation (``align_corners=False``, ``a = -0.75``); :func:`bicubic_matrix` is that linear
map, so the resized queries are a constant matrix times ``q`` and their gradient is its transpose.

**Embedding** between stages (:class:`SemanticEmbed`): ``proj_proxy`` = ``Linear(C_in, C_out)``,
``LayerNorm(C_out)``. The internal LayerNorms here have eps 1e-5.
"""
from __future__ import annotations

import math

import numpy as np

from refvit import functional as F
from refvit.nn import init
from refvit.nn.activation import ReLU
from refvit.nn.container import Sequential
from refvit.nn.dualvit.tokens import map_to_tokens, split_channels
from refvit.nn.linear import Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm
from refvit.nn.parameter import Parameter, resolve_dtype


def _cubic_weights(t, a=-0.75):
    """Keys' cubic convolution weights of the taps at offsets -1, 0, 1, 2 for a fraction ``t``."""
    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return (far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t))


def bicubic_matrix(size_in, size_out):
    """``(size_out, size_in)``: PyTorch's 1-D bicubic resize (``align_corners=False``) as a matrix.

    Output ``i`` samples the input at ``(i + 0.5) size_in / size_out - 0.5``; taps outside the
    input are clamped to the border, so their weights add to the border element.
    """
    matrix = np.zeros((size_out, size_in))
    for i in range(size_out):
        source = (i + 0.5) * size_in / size_out - 0.5
        left = math.floor(source)
        for offset, weight in zip((-1, 0, 1, 2), _cubic_weights(source - left)):
            matrix[i, min(max(left + offset, 0), size_in - 1)] += weight
    return matrix


def resize_queries(queries, grid_h, grid_w):
    """``queries (g g, C)`` read as a ``g x g`` grid -> ``(grid_h grid_w, C)`` by bicubic resizing."""
    count = tuple(queries.shape)[0]
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"SemanticTokenInit: 'q' must hold a square number of queries to be resized to the "
                         f"{grid_h}x{grid_w} pooled grid; got {count}")
    resize = np.kron(bicubic_matrix(side, grid_h), bicubic_matrix(side, grid_w)).astype(queries.dtype)
    return F.linear(resize, F.transpose(queries, 0, 1))  # resize @ queries


def semantic_init_parts(dim, num_tokens, dtype=None):
    """The official parts, by name: ``q (num_tokens, dim)``, ``q_embed``, ``kv``, ``proxy_ln``, ``se``."""
    queries = Parameter(np.zeros((num_tokens, dim), resolve_dtype(dtype)))
    init.trunc_normal_(queries, std=0.02)
    return {
        "q": queries,
        "q_embed": Sequential(LayerNorm(dim, dtype=dtype), Linear(dim, dim, dtype=dtype)),
        "kv": Linear(dim, 2 * dim, dtype=dtype),
        "proxy_ln": LayerNorm(dim, dtype=dtype),
        "se": Sequential(Linear(dim, dim, dtype=dtype), ReLU(), Linear(dim, 2 * dim, dtype=dtype)),
    }


def initial_semantic_tokens(x, pool_size, q, q_embed, kv, se, proxy_ln):
    """Semantic tokens ``(B, m, C)`` from the stem output ``x (B, H, W, C)``; math in the module docstring."""
    pooled = F.avg_pool2d(x, pool_size, stride=pool_size)
    batch, grid_h, grid_w, channels = tuple(pooled.shape)
    x_down = map_to_tokens(pooled)
    queries = q if grid_h * grid_w == tuple(q.shape)[0] else resize_queries(q, grid_h, grid_w)
    tokens = grid_h * grid_w
    queries = F.broadcast_to(F.reshape(q_embed(queries), (1, 1, tokens, channels)), (batch, 1, tokens, channels))
    k, v = (F.reshape(part, (batch, 1, tokens, channels)) for part in split_channels(kv(x_down), 2))
    attended = F.reshape(F.attention(queries, k, v, scale=channels ** -0.5), (batch, tokens, channels))
    gate = se(F.mean(attended + x_down, axis=1))                       # (B, 2C)
    weights = F.softmax(F.reshape(gate, (batch, 2, channels)), axis=1)  # over the two sources
    weight_attended, weight_pooled = F.split(weights, [1, 1], axis=1)   # (B, 1, C) each
    return proxy_ln(attended * weight_attended + x_down * weight_pooled)


class SemanticTokenInit(Module):
    """``x (B, H, W, C)`` -> initial semantic tokens ``(B, m, C)``, ``m = num_tokens`` at the matching size."""

    def __init__(self, dim, num_tokens=64, pool_size=7, dtype=None):
        super().__init__()
        for name, part in semantic_init_parts(dim, num_tokens, dtype).items():
            setattr(self, name, part)
        self.pool_size = pool_size

    def forward(self, x):
        return initial_semantic_tokens(x, self.pool_size, self.q, self.q_embed, self.kv, self.se, self.proxy_ln)

    def extra_repr(self):
        return f"num_tokens={tuple(self.q.shape)[0]}, pool_size={self.pool_size}"


class SemanticEmbed(Module):
    """``(B, m, C_in)`` -> ``(B, m, C_out)``: ``proj_proxy`` = Linear, LayerNorm."""

    def __init__(self, in_channels, out_channels, dtype=None):
        super().__init__()
        self.proj_proxy = Sequential(Linear(in_channels, out_channels, dtype=dtype),
                                     LayerNorm(out_channels, dtype=dtype))

    def forward(self, semantics):
        return self.proj_proxy(semantics)
