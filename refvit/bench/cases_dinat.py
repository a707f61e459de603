"""Benchmark cases for ``na2d`` at the shape of DiNAT-Mini's first level at 224x224.

``(1, 4, 56, 56, 32)`` (one image, 4 heads of d = 32 as on a 128-channel map), kernel 7, with
the relative positional bias; once with plain NA and once with dilation 2. The PyTorch
equivalent is dense attention over all ``56*56 = 3136`` tokens: the full ``3136 x 3136`` logits
plus a bias matrix that holds the gathered ``rpb`` inside each query's window and ``-inf``
outside it, built from the same window rule. It computes ``(H W)^2 / k^2 = 64`` times the
arithmetic of the neighbourhood, which is what a framework without a neighbourhood kernel
pays; the flop count reported is the neighbourhood's own, ``4 B heads H W k^2 d``.

Two more cases time a whole DiNAT layer (LN, qkv, DiNA, proj, LN, MLP with ratio 3) through the
op-like wrapper :mod:`refvit.bench._dinat_layer`: DiNAT-Mini's level 1 (56x56, C 64, dilation 8)
and level 3 (14x14, C 256, dilation 2). Their PyTorch equivalent uses the same seeded weights and
the same dense masked attention.
"""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase, _dinat_layer
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


def _layer_inputs(size, dim, num_heads, dilation):
    def make(rng, dtype):
        return (rng.standard_normal((1, size, size, dim)).astype(dtype), num_heads, KERNEL), {"dilation": dilation}

    return make


def _layer_torch(args, kwargs):
    """The same seeded layer (``_dinat_layer.layer_for``'s weights) in torch functional ops."""
    import torch
    import torch.nn.functional as F

    x, heads, kernel_size = args
    dilation = kwargs.get("dilation", 1)
    batch, height, width, dim = x.shape
    layer = _dinat_layer.layer_for(dim, heads, kernel_size, dilation, x.dtype)
    w = {k: torch.from_numpy(np.array(v)).requires_grad_(True) for k, v in layer.state_dict().items()}
    index, inside = dense_bias_index(height, width, kernel_size, dilation)
    index, outside = torch.from_numpy(index), torch.from_numpy(~inside)
    x = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)

    def run():
        tokens = F.layer_norm(x, (dim,), w["norm1.weight"], w["norm1.bias"]).reshape(batch, height * width, dim)
        qkv = F.linear(tokens, w["attn.qkv.weight"], w["attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, height * width, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        bias = w["attn.rpb"].reshape(heads, -1)[:, index].masked_fill(outside, float("-inf"))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        attended = attended.permute(0, 2, 1, 3).reshape(batch, height, width, dim)
        h = x + F.linear(attended, w["attn.proj.weight"], w["attn.proj.bias"])
        hidden = F.gelu(F.linear(F.layer_norm(h, (dim,), w["norm2.weight"], w["norm2.bias"]), w["mlp.fc1.weight"],
                                 w["mlp.fc1.bias"]))
        return h + F.linear(hidden, w["mlp.fc2.weight"], w["mlp.fc2.bias"])

    return run


def _layer_flops(args, kwargs):
    x, _, kernel_size = args
    tokens, dim = x.size // x.shape[3], x.shape[3]
    # qkv, proj: 2 * 4 C^2 per token; fc1, fc2 at ratio 3: 2 * 6 C^2; neighbourhood: 4 k^2 C.
    return tokens * (2.0 * 10 * dim * dim + 4.0 * kernel_size * kernel_size * dim)


CASES = [
    BenchCase(f"na2d {KERNEL}x{KERNEL} (1,4,56,56,32) rpb", "na2d", _na2d_inputs(1), _na2d_torch, _flops),
    BenchCase(f"na2d {KERNEL}x{KERNEL} dilation 2 (1,4,56,56,32) rpb", "na2d", _na2d_inputs(2), _na2d_torch, _flops),
    BenchCase("NATLayer DiNAT-Mini level 1 (1,56,56,64) d 8", _dinat_layer, _layer_inputs(56, 64, 2, 8),
              _layer_torch, _layer_flops),
    BenchCase("NATLayer DiNAT-Mini level 3 (1,14,14,256) d 2", _dinat_layer, _layer_inputs(14, 256, 8, 2),
              _layer_torch, _layer_flops),
]
