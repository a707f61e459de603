"""Benchmark cases for CoAtNet-0 at 224x224: relative attention in stages 3 and 4, and an MBConv block.

* Relative attention = ``attention(q, k, v, bias)`` with ``bias = relative_position_bias(table)``
  over the whole map: stage 3 is 14x14 tokens with 12 heads, stage 4 7x7 tokens with 24 heads,
  head dimension 32. The PyTorch row is ``scaled_dot_product_attention`` with the bias as
  ``attn_mask`` (a float mask is added to the logits), what timm runs.
* ``relative_position_bias`` alone at the stage-3 window (the gather and its scatter-add).
* A stage-2 MBConv block (28x28, 192 channels, expanded to 768) forward and backward, through
  the op-like wrapper :mod:`refvit.bench._coatnet_mbconv` (the case's ``op`` is that module).
"""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase, _coatnet_mbconv
from refvit.ops import relative_position_bias


def _relative_attention_inputs(batch, heads, side, dim_head=32):
    def make(rng, dtype):
        q, k, v = ((rng.standard_normal((batch, heads, side * side, dim_head))).astype(dtype) for _ in range(3))
        table = (0.02 * rng.standard_normal(((2 * side - 1) ** 2, heads))).astype(dtype)
        bias, _ = relative_position_bias.forward(table, (side, side), backend="numpy")
        return (q, k, v, bias), {}

    return make


def _relative_attention_torch(args, kwargs):
    import torch
    import torch.nn.functional as F

    q, k, v, bias = (torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True) for a in args)
    return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _attention_flops(args, kwargs):
    q, k = args[0], args[1]
    return 4.0 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]


def _table_inputs(side, heads):
    def make(rng, dtype):
        return (rng.standard_normal(((2 * side - 1) ** 2, heads)).astype(dtype), (side, side)), {}

    return make


def _table_torch(args, kwargs):
    import torch

    table, (side, _) = args
    rows, cols = np.divmod(np.arange(side * side), side)
    index = ((rows[:, None] - rows[None, :] + side - 1) * (2 * side - 1) + cols[:, None] - cols[None, :] + side - 1)
    table = torch.from_numpy(table).requires_grad_(True)
    index = torch.from_numpy(index.reshape(-1))
    return lambda: table[index].view(side * side, side * side, -1).permute(2, 0, 1)


def _mbconv_inputs(batch, side, channels):
    def make(rng, dtype):
        return (rng.standard_normal((batch, side, side, channels)).astype(dtype),), {"out_chs": channels}

    return make


def _mbconv_torch(args, kwargs):
    import torch
    import torch.nn.functional as F

    (x,) = args
    channels, mid, dtype = x.shape[3], 4 * x.shape[3], x.dtype
    gen = np.random.default_rng(0)

    def leaf(*shape, scale=0.05):
        return torch.from_numpy((scale * gen.standard_normal(shape)).astype(dtype)).requires_grad_(True)

    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    w1, w2, w3, b3 = leaf(mid, channels, 1, 1), leaf(mid, 1, 3, 3), leaf(channels, mid, 1, 1), leaf(channels)
    squeeze = channels // 4
    se1, se1b, se2, se2b = leaf(squeeze, mid, 1, 1), leaf(squeeze), leaf(mid, squeeze, 1, 1), leaf(mid)
    norms = [(torch.zeros(n, dtype=x.dtype), torch.ones(n, dtype=x.dtype), leaf(n), leaf(n)) for n in
             (channels, mid, mid)]

    def norm(h, i):
        mean, var, weight, bias = norms[i]
        return F.batch_norm(h, mean, var, weight, bias, False)

    def run():
        h = F.gelu(norm(F.conv2d(norm(x, 0), w1), 1))
        h = F.gelu(norm(F.conv2d(h, w2, padding=1, groups=mid), 2))
        gate = torch.sigmoid(F.conv2d(F.silu(F.conv2d(h.mean((2, 3), keepdim=True), se1, se1b)), se2, se2b))
        return F.conv2d(h * gate, w3, b3) + x

    return run


def _mbconv_flops(args, kwargs):
    batch, height, width, channels = args[0].shape
    mid = 4 * channels
    return 2.0 * batch * height * width * (2 * channels * mid + 9 * mid)


CASES = [
    BenchCase("relative attention CoAtNet-0 s3 (1,12,196,32)", "attention", _relative_attention_inputs(1, 12, 14),
              _relative_attention_torch, flops=_attention_flops, tags=("coatnet",)),
    BenchCase("relative attention CoAtNet-0 s4 (1,24,49,32)", "attention", _relative_attention_inputs(1, 24, 7),
              _relative_attention_torch, flops=_attention_flops, tags=("coatnet",)),
    BenchCase("relative_position_bias CoAtNet-0 s3 14x14 h12", "relative_position_bias", _table_inputs(14, 12),
              _table_torch, tags=("coatnet",)),
    BenchCase("MBConv CoAtNet-0 s2 (8,28,28,192)", _coatnet_mbconv, _mbconv_inputs(8, 28, 192),
              _mbconv_torch, flops=_mbconv_flops, tags=("coatnet",)),
]
