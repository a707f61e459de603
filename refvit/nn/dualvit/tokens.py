r"""Token-sequence helpers shared by the DualViT modules.

DualViT works on token sequences ``(B, N, C)``; a pixel sequence is a ``(B, H, W, C)`` map read
row-major (token ``r W + c`` is pixel ``(r, c)``). Multi-head tensors are heads-first
``(B, heads, N, d)`` with channel ``h d + j`` of a ``(B, N, C)`` projection going to head ``h``,
the layout of the official ``reshape(B, N, heads, d).permute(0, 2, 1, 3)``.

:func:`multi_head_attention` is ``ops.attention`` between two token sets: queries from one
sequence, keys and values from another (cross-attention) or the same one (self-attention).

.. math::  \mathrm{MHA}(Q, K, V)_h = \mathrm{softmax}\bigl(\text{scale}\; Q_h K_h^\top\bigr) V_h
"""
from __future__ import annotations

from refvit import functional as F
from refvit._validate import check_heads as _check_heads


def split_heads(tokens, heads):
    """``(B, N, C)`` -> ``(B, heads, N, C / heads)``; channel ``h d + j`` goes to head ``h``."""
    batch, length, channels = tuple(tokens.shape)
    return F.permute(F.reshape(tokens, (batch, length, heads, channels // heads)), (0, 2, 1, 3))


def merge_heads(tokens):
    """``(B, heads, N, d)`` -> ``(B, N, heads d)``: the inverse of :func:`split_heads`."""
    batch, heads, length, head_dim = tuple(tokens.shape)
    return F.reshape(F.permute(tokens, (0, 2, 1, 3)), (batch, length, heads * head_dim))


def split_channels(tokens, parts):
    """``(B, N, parts C)`` -> ``parts`` sequences ``(B, N, C)``: ``[k | v]`` or ``[q | k | v]``."""
    channels = tuple(tokens.shape)[2] // parts
    return F.split(tokens, [channels] * parts, axis=2)


def multi_head_attention(queries, keys, values, heads, scale):
    """Attention of ``queries (B, Nq, C)`` over ``keys, values (B, Nk, C)`` with ``heads`` heads -> ``(B, Nq, C)``.

    Each query row attends only to the ``Nk`` key rows, so the number of logits is
    ``B heads Nq Nk``: linear in ``Nq`` for a fixed key set and vice versa.
    """
    attended = F.attention(split_heads(queries, heads), split_heads(keys, heads), split_heads(values, heads),
                           scale=scale)
    return merge_heads(attended)


def tokens_to_map(tokens, height, width):
    """``(B, H W, C)`` -> ``(B, H, W, C)``."""
    batch, _, channels = tuple(tokens.shape)
    return F.reshape(tokens, (batch, height, width, channels))


def map_to_tokens(feature_map):
    """``(B, H, W, C)`` -> ``(B, H W, C)``, row-major."""
    batch, height, width, channels = tuple(feature_map.shape)
    return F.reshape(feature_map, (batch, height * width, channels))


def check_heads(where, dim, heads):
    return _check_heads(where, "num_heads", heads, dim)
