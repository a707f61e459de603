"""Benchmark cases for ``na2d`` at the shape of DiNAT-Mini's first level at 224x224.

``(1, 4, 56, 56, 32)`` (one image, 4 heads of d = 32 as on a 128-channel map), kernel 7, with
the relative positional bias; once with plain NA and once with dilation 2. The PyTorch
equivalent is dense attention over all ``56*56 = 3136`` tokens: the full ``3136 x 3136`` logits
plus a bias matrix that holds the gathered ``rpb`` inside each query's window and ``-inf``
outside it, built from the same window rule. It computes ``(H W)^2 / k^2 = 64`` times the
arithmetic of the neighbourhood, which is what a framework without a neighbourhood kernel
pays; the flop count reported is the neighbourhood's own, ``4 B heads H W k^2 d``.
"""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase
from refvit.ops._neighborhood import axis_windows

SHAPE = (1, 4, 56, 56, 32)
KERNEL = 7


def _na2d_inputs(dilation):
    def make(rng, dtype):
        q, k, v = (rng.standard_normal(SHAPE).astype(dtype) for _ in range(3))
        rpb = (0.02 * rng.standard_normal((SHAPE[1], 2 * KERNEL - 1, 2 * KERNEL - 1))).astype(dtype)
        return (q, k, v, KERNEL), {"dilation": dilation, "rpb": rpb}

    return make


def dense_bias_index(height, width, kernel_size, dilation):
    """``(index, inside)``: for every (query, key) pair of the flattened map, the flat ``rpb`` index of
    the pair and whether the key is in the query's window; ``(H*W, H*W)`` each."""
    rows = axis_windows(height, kernel_size, dilation)
    cols = axis_windows(width, kernel_size, dilation)
    span = 2 * kernel_size - 1
    tokens = height * width
    index = np.zeros((tokens, tokens), np.int64)
    inside = np.zeros((tokens, tokens), bool)
    for x in range(height):
        for y in range(width):
            query = x * width + y
            keys = (rows.keys[x][:, None] * width + cols.keys[y][None, :]).ravel()
            index[query, keys] = (rows.bias_index[x][:, None] * span + cols.bias_index[y][None, :]).ravel()
            inside[query, keys] = True
    return index, inside


def _na2d_torch(args, kwargs):
    import torch
    import torch.nn.functional as F

    q, k, v, kernel_size = args
    batch, heads, height, width, head_dim = q.shape
    index, inside = dense_bias_index(height, width, kernel_size, kwargs.get("dilation", 1))
    index, outside = torch.from_numpy(index), torch.from_numpy(~inside)
    q, k, v = (torch.from_numpy(np.ascontiguousarray(a).reshape(batch, heads, height * width, head_dim))
               .requires_grad_(True) for a in (q, k, v))
    rpb = torch.from_numpy(np.ascontiguousarray(kwargs["rpb"])).requires_grad_(True)

    def run():
        bias = rpb.reshape(heads, -1)[:, index].masked_fill(outside, float("-inf"))   # (heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.reshape(batch, heads, height, width, head_dim)

    return run


def _flops(args, kwargs):
    q, _, _, kernel_size = args
    batch, heads, height, width, head_dim = q.shape
    return 4.0 * batch * heads * height * width * kernel_size * kernel_size * head_dim


CASES = [
    BenchCase(f"na2d {KERNEL}x{KERNEL} (1,4,56,56,32) rpb", "na2d", _na2d_inputs(1), _na2d_torch, _flops),
    BenchCase(f"na2d {KERNEL}x{KERNEL} dilation 2 (1,4,56,56,32) rpb", "na2d", _na2d_inputs(2), _na2d_torch, _flops),
]
