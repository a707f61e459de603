"""Benchmark cases for CSWin's ``stripe_attention`` at the shapes of CSWin-T at 224x224.

One branch of a block per case: stage 1 (56x56 map, 1 head of d=32 per branch, stripes of width 1)
and stage 3 (14x14, 4 heads per branch, stripes of width 7), vertical and horizontal. The PyTorch
equivalent cuts the windows with view/permute, runs ``scaled_dot_product_attention`` on them and
adds the LePE depthwise 3x3 convolution of each window.
"""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase


def _stripe_inputs(batch, heads, height, width, head_dim, stripe_size):
    def make(rng, dtype):
        shape = (batch, heads, height, width, head_dim)
        q, k, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
        channels = heads * head_dim
        kwargs = dict(lepe_weight=(0.3 * rng.standard_normal((channels, 1, 3, 3))).astype(dtype),
                      lepe_bias=(0.1 * rng.standard_normal(channels)).astype(dtype))
        return (q, k, v, stripe_size), kwargs

    return make


def _stripe_attention_torch(args, kwargs):
    import torch
    import torch.nn.functional as F

    q, k, v, (stripe_h, stripe_w) = args
    batch, heads, height, width, head_dim = q.shape
    q, k, v, weight, bias = (torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)
                             for a in (q, k, v, kwargs["lepe_weight"], kwargs["lepe_bias"]))
    rows, cols = height // stripe_h, width // stripe_w

    def windows(x):  # (B, h, H, W, d) -> (B*rows*cols, h, sh*sw, d)
        x = x.reshape(batch, heads, rows, stripe_h, cols, stripe_w, head_dim).permute(0, 2, 4, 1, 3, 5, 6)
        return x.reshape(-1, heads, stripe_h * stripe_w, head_dim)

    def run():
        v_windows = windows(v)
        attended = F.scaled_dot_product_attention(windows(q), windows(k), v_windows)
        images = v_windows.reshape(-1, heads, stripe_h, stripe_w, head_dim).permute(0, 1, 4, 2, 3)
        images = images.reshape(-1, heads * head_dim, stripe_h, stripe_w)
        lepe = F.conv2d(images, weight, bias, padding=1, groups=heads * head_dim)
        lepe = lepe.reshape(-1, heads, head_dim, stripe_h * stripe_w).transpose(2, 3)
        out = (attended + lepe).reshape(batch, rows, cols, heads, stripe_h, stripe_w, head_dim)
        return out.permute(0, 3, 1, 4, 2, 5, 6).reshape(batch, heads, height, width, head_dim)

    return run


def _flops(args, kwargs):
    q, _, _, (stripe_h, stripe_w) = args
    tokens = stripe_h * stripe_w
    # q k^T and P v: 2 * 2 * tokens * d per query; LePE: 2 * 9 per element.
    return 4.0 * q.size * tokens + 18.0 * q.size


def _case(label, heads, size, stripe_size):
    return BenchCase(f"stripe_attention {label} (1,{heads},{size},{size},32) {stripe_size}", "stripe_attention",
                     _stripe_inputs(1, heads, size, size, 32, stripe_size), _stripe_attention_torch, _flops)


CASES = [
    _case("CSWin-T stage 1", 1, 56, (56, 1)),
    _case("CSWin-T stage 1", 1, 56, (1, 56)),
    _case("CSWin-T stage 3", 4, 14, (14, 7)),
    _case("CSWin-T stage 3", 4, 14, (7, 14)),
]
