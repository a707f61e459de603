"""Benchmark case for DualViT: one DualBlock forward+backward at the stage-1 shape of DualViT-S at 224.

Pixel tokens ``(1, 56*56, 64)``, 64 semantic tokens, 2 heads, FFN ratio 8, through the op-like
wrapper :mod:`refvit.bench._dualvit_block` (``numpy`` and ``cpu`` backends; ``cuda`` on a real GPU).
The PyTorch equivalent is the same block written with torch functional ops on the same parameters.

The case's ``op`` is that wrapper module: ``python -m refvit.bench --filter dualvit`` times it.
"""
from __future__ import annotations

from refvit.bench import BenchCase, _dualvit_block

STAGE1 = dict(batch=1, side=56, dim=64, heads=2, mlp_ratio=8, tokens=64)


def _block_inputs(batch, side, dim, heads, mlp_ratio, tokens):
    def make(rng, dtype):
        from refvit.nn.dualvit import DualBlock

        block = DualBlock(dim, heads, mlp_ratio, dtype=dtype)
        for name, parameter in block.named_parameters():  # layer scales of 1e-6 would hide the branches
            if "gamma" in name:
                parameter.data[...] = 0.5
        x = rng.standard_normal((batch, side * side, dim)).astype(dtype)
        semantics = rng.standard_normal((batch, tokens, dim)).astype(dtype)
        return (x, semantics), dict(block=block, height=side, width=side)

    return make


def _torch_block(args, kwargs):
    """The DualBlock in torch functional ops, on the same parameters (official semantics)."""
    import torch
    import torch.nn.functional as F

    x_np, semantics_np = args
    block, height, width = kwargs["block"], kwargs["height"], kwargs["width"]
    p = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in block.state_dict().items()}
    x, semantics = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x_np, semantics_np))
    heads = block.attn.num_heads
    scale = block.attn.scale

    def linear(t, name):
        return F.linear(t, p[name + ".weight"], p[name + ".bias"])

    def norm(t, name, eps=1e-5):
        return F.layer_norm(t, (t.shape[-1],), p[name + ".weight"], p[name + ".bias"], eps)

    def attend(q, k, v):
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), scale=scale)
        return out.transpose(1, 2).reshape(q.shape)

    def run():
        xn = norm(x, "norm1", 1e-6)
        q, k, v = linear(norm(semantics, "attn.qkv_proxy.0"), "attn.qkv_proxy.1").chunk(3, dim=-1)
        s = semantics + p["attn.gamma1"] * attend(q, k, v)
        kp, vp = linear(xn, "attn.kv_proxy").chunk(2, dim=-1)
        s = s + p["attn.gamma2"] * attend(linear(norm(s, "attn.q_proxy_ln"), "attn.q_proxy"), kp, vp)
        s = s + p["attn.gamma3"] * linear(F.relu(linear(norm(s, "attn.p_ln"), "attn.mlp_proxy.0")), "attn.mlp_proxy.2")
        k, v = linear(norm(s, "attn.proxy_ln"), "attn.kv").chunk(2, dim=-1)
        out = x + p["gamma1"] * linear(attend(linear(xn, "attn.q"), k, v), "attn.proj")
        hidden = linear(norm(out, "norm2", 1e-6), "mlp.fc1")
        image = hidden.transpose(1, 2).reshape(hidden.shape[0], -1, height, width)
        hidden = F.conv2d(image, p["mlp.dwconv.dwconv.weight"], p["mlp.dwconv.dwconv.bias"], padding=1,
                          groups=image.shape[1]).flatten(2).transpose(1, 2)
        out = out + p["gamma2"] * linear(F.gelu(hidden), "mlp.fc2")
        return torch.cat([out, s], dim=1)

    return run


def _flops(args, kwargs):
    x, semantics = args
    batch, n, dim = x.shape
    m = semantics.shape[1]
    hidden = kwargs["block"].mlp.fc1.out_features
    linear = 2 * dim * (n * (dim + 2 * dim + dim) + m * (3 * dim + dim + 8 * dim + 2 * dim)) + 4 * n * dim * hidden
    attention = 4 * dim * (m * m + 2 * n * m)
    return float(batch * (linear + attention + 18 * n * hidden))


CASES = [
    BenchCase("dualvit_block DualViT-S s1 (1,3136,64) m64", _dualvit_block, _block_inputs(**STAGE1), _torch_block,
              flops=_flops, backends=("numpy", "cpu"), tags=("dualvit",)),
]

