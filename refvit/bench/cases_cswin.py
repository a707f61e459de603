"""Benchmark cases for CSWin at the shapes of CSWin-T at 224x224: ``stripe_attention`` and whole blocks.

``stripe_attention``, one branch of a block per case: stage 1 (56x56 map, 1 head of d=32 per branch, stripes of width 1)
and stage 3 (14x14, 4 heads per branch, stripes of width 7), vertical and horizontal. The PyTorch
equivalent cuts the windows with view/permute, runs ``scaled_dot_product_attention`` on them and
adds the LePE depthwise 3x3 convolution of each window. The block cases time a seeded
``CSWinBlock`` (through the op-like :mod:`refvit.bench._cswin_block`) at the stage-1 and stage-3
shapes, against the same weights in torch functional ops.
"""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase, _cswin_block


def _stripe_inputs(batch, heads, height, width, head_dim, stripe_size):
    def make(rng, dtype):
        shape = (batch, heads, height, width, head_dim)
        q, k, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
        channels = heads * head_dim
        kwargs = dict(lepe_weight=(0.3 * rng.standard_normal((channels, 1, 3, 3))).astype(dtype),
                      lepe_bias=(0.1 * rng.standard_normal(channels)).astype(dtype))
        return (q, k, v, stripe_size), kwargs

    return make


def _torch_stripe_attention(q, k, v, weight, bias, stripe_h, stripe_w):
    """Torch tensors ``q, k, v (B, h, H, W, d)``: windows by view/permute, SDPA, LePE conv per window."""
    import torch.nn.functional as F

    batch, heads, height, width, head_dim = q.shape
    rows, cols = height // stripe_h, width // stripe_w

    def windows(x):  # (B, h, H, W, d) -> (B*rows*cols, h, sh*sw, d)
        x = x.reshape(batch, heads, rows, stripe_h, cols, stripe_w, head_dim).permute(0, 2, 4, 1, 3, 5, 6)
        return x.reshape(-1, heads, stripe_h * stripe_w, head_dim)

    v_windows = windows(v)
    attended = F.scaled_dot_product_attention(windows(q), windows(k), v_windows)
    images = v_windows.reshape(-1, heads, stripe_h, stripe_w, head_dim).permute(0, 1, 4, 2, 3)
    images = images.reshape(-1, heads * head_dim, stripe_h, stripe_w)
    lepe = F.conv2d(images, weight, bias, padding=1, groups=heads * head_dim)
    lepe = lepe.reshape(-1, heads, head_dim, stripe_h * stripe_w).transpose(2, 3)
    out = (attended + lepe).reshape(batch, rows, cols, heads, stripe_h, stripe_w, head_dim)
    return out.permute(0, 3, 1, 4, 2, 5, 6).reshape(batch, heads, height, width, head_dim)


def _stripe_attention_torch(args, kwargs):
    import torch

    q, k, v, (stripe_h, stripe_w) = args
    q, k, v, weight, bias = (torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)
                             for a in (q, k, v, kwargs["lepe_weight"], kwargs["lepe_bias"]))
    return lambda: _torch_stripe_attention(q, k, v, weight, bias, stripe_h, stripe_w)


def _flops(args, kwargs):
    q, _, _, (stripe_h, stripe_w) = args
    tokens = stripe_h * stripe_w
    # q k^T and P v: 2 * 2 * tokens * d per query; LePE: 2 * 9 per element.
    return 4.0 * q.size * tokens + 18.0 * q.size


def _case(label, heads, size, stripe_size):
    return BenchCase(f"stripe_attention {label} (1,{heads},{size},{size},32) {stripe_size}", "stripe_attention",
                     _stripe_inputs(1, heads, size, size, 32, stripe_size), _stripe_attention_torch, _flops)


def _block_inputs(batch, size, dim, num_heads, split_size):
    def make(rng, dtype):
        return (rng.standard_normal((batch, size, size, dim)).astype(dtype), num_heads, split_size), {}

    return make


def _block_torch(args, kwargs):
    """The same seeded block (``_cswin_block.block_for``'s weights) in torch functional ops."""
    import torch
    import torch.nn.functional as F

    x, heads, split = args
    batch, height, width, dim = x.shape
    block = _cswin_block.block_for(dim, heads, split, False, x.dtype)
    w = {k: torch.from_numpy(np.array(v)).requires_grad_(True) for k, v in block.state_dict().items()}
    x = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    branches = len(block.attns)
    part, part_heads = dim // branches, heads // branches
    stripes = [(height, split), (split, width)] if branches == 2 else [(height, width)]

    def heads_first(t):
        return t.reshape(batch, height, width, part_heads, part // part_heads).permute(0, 3, 1, 2, 4)

    def run():
        q, k, v = F.linear(F.layer_norm(x, (dim,), w["norm1.weight"], w["norm1.bias"]), w["qkv.weight"],
                           w["qkv.bias"]).split(dim, dim=-1)
        outs = []
        for b, (stripe_h, stripe_w) in enumerate(stripes):
            piece = slice(b * part, (b + 1) * part)
            out = _torch_stripe_attention(heads_first(q[..., piece]), heads_first(k[..., piece]),
                                          heads_first(v[..., piece]), w[f"attns.{b}.get_v.weight"],
                                          w[f"attns.{b}.get_v.bias"], stripe_h, stripe_w)
            outs.append(out.permute(0, 2, 3, 1, 4).reshape(batch, height, width, part))
        h = x + F.linear(torch.cat(outs, dim=-1), w["proj.weight"], w["proj.bias"])
        hidden = F.gelu(F.linear(F.layer_norm(h, (dim,), w["norm2.weight"], w["norm2.bias"]), w["mlp.fc1.weight"],
                                 w["mlp.fc1.bias"]))
        return h + F.linear(hidden, w["mlp.fc2.weight"], w["mlp.fc2.bias"])

    return run


def _block_flops(args, kwargs):
    x, _, split = args
    batch, height, width, dim = x.shape
    # qkv, proj, fc1, fc2: 2 * 12 * C^2 per token; each branch: 4 * tokens-per-window * C/2 per token.
    window_tokens = (height * split + split * width) / 2.0
    return 2.0 * 12 * dim * dim * x.size / dim + 4.0 * window_tokens * x.size


CASES = [
    _case("CSWin-T stage 1", 1, 56, (56, 1)),
    _case("CSWin-T stage 1", 1, 56, (1, 56)),
    _case("CSWin-T stage 3", 4, 14, (14, 7)),
    _case("CSWin-T stage 3", 4, 14, (7, 14)),
    BenchCase("CSWinBlock CSWin-T stage 1 (1,56,56,64) split 1", _cswin_block, _block_inputs(1, 56, 64, 2, 1),
              _block_torch, _block_flops),
    BenchCase("CSWinBlock CSWin-T stage 3 (1,14,14,256) split 7", _cswin_block, _block_inputs(1, 14, 256, 8, 7),
              _block_torch, _block_flops),
]
