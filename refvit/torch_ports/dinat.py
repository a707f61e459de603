"""A PyTorch NAT / DiNAT written from the official semantics, with the official names.

The neighbourhoods follow NATTEN 0.14's own index arithmetic (window start and bias start per
axis, with its separate border cases for dilation), not refvit's ``_neighborhood`` formulas,
so the tests compare two derivations of the same rule. Attention gathers each query's
``k x k`` keys with advanced indexing and runs a plain softmax; the small-map behaviour pads the
normalised input before ``qkv`` and crops before ``proj``, as NATTEN's module does.
The tests use it to check refvit's NAT / DiNAT (needs torch).

``attention="dense"`` (:func:`use_dense_attention`) runs the same neighbourhoods as one dense
``scaled_dot_product_attention`` over all tokens with a bias matrix that is ``-inf`` outside each
query's window: what a PyTorch CPU user without a neighbourhood kernel runs, and what
``refvit bench`` times against refvit.
"""
import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def window_start(index, length, kernel_size, dilation):
    """First key of query ``index`` (NATTEN's case analysis: left border, right border, inside)."""
    radius = kernel_size // 2
    if dilation <= 1:
        start = max(index - radius, 0)
        if index + radius >= length:
            start += length - index - radius - 1
        return start
    if index - radius * dilation < 0:
        return index % dilation
    if index + radius * dilation >= length:
        group = index % dilation
        whole = (length // dilation) * dilation
        remainder = length - whole
        if group < remainder:
            return length - remainder + group - 2 * radius * dilation
        return whole + group - kernel_size * dilation
    return index - radius * dilation


def bias_start(index, length, kernel_size, dilation):
    """Row of ``rpb`` used by the first key of query ``index`` (NATTEN's ``get_pb_start``)."""
    radius = kernel_size // 2
    if dilation <= 1:
        start = radius
        if index < radius:
            start += radius - index
        if index + radius >= length:
            start += length - index - 1 - radius
        return start
    if index - radius * dilation < 0:
        return kernel_size - 1 - index // dilation
    if index + radius * dilation >= length:
        return (length - index - 1) // dilation
    return radius


def axis_tables(length, kernel_size, dilation):
    """``(keys, bias)``: ``(length, kernel_size)`` long tensors of key and bias indices of one axis."""
    keys = [[window_start(i, length, kernel_size, dilation) + dilation * t for t in range(kernel_size)]
            for i in range(length)]
    bias = [[bias_start(i, length, kernel_size, dilation) + t for t in range(kernel_size)] for i in range(length)]
    return torch.tensor(keys), torch.tensor(bias)


def neighborhood_attention(q, k, v, rpb, kernel_size, dilation):
    """``q, k, v (B, heads, H, W, d)`` (q already scaled), ``rpb (heads, 2k-1, 2k-1)`` -> ``(B, heads, H, W, d)``."""
    height, width = q.shape[2], q.shape[3]
    key_rows, bias_rows = axis_tables(height, kernel_size, dilation)
    key_cols, bias_cols = axis_tables(width, kernel_size, dilation)
    rows, cols = key_rows[:, None, :, None], key_cols[None, :, None, :]       # (H, W, k, k) by broadcasting
    keys, values = k[:, :, rows, cols], v[:, :, rows, cols]                  # (B, heads, H, W, k, k, d)
    logits = torch.einsum("bhxyc,bhxyuwc->bhxyuw", q, keys)
    if rpb is not None:
        logits = logits + rpb[:, bias_rows[:, None, :, None], bias_cols[None, :, None, :]]
    weights = logits.flatten(-2).softmax(-1).view(logits.shape)
    return torch.einsum("bhxyuw,bhxyuwc->bhxyc", weights, values)


@functools.lru_cache(maxsize=16)
def dense_tables(height, width, kernel_size, dilation):
    """``(index, outside)``: for every (query, key) pair of the flattened ``height x width`` map, the flat
    ``rpb`` index of the pair and whether the key is outside the query's window; ``(H*W, H*W)`` each."""
    key_rows, bias_rows = axis_tables(height, kernel_size, dilation)
    key_cols, bias_cols = axis_tables(width, kernel_size, dilation)
    span, tokens = 2 * kernel_size - 1, height * width
    keys = (key_rows[:, None, :, None] * width + key_cols[None, :, None, :]).reshape(tokens, -1)
    bias = (bias_rows[:, None, :, None] * span + bias_cols[None, :, None, :]).reshape(tokens, -1)
    index = torch.zeros(tokens, tokens, dtype=torch.long).scatter_(1, keys, bias)
    outside = torch.ones(tokens, tokens, dtype=torch.bool).scatter_(1, keys, False)
    return index, outside


def dense_neighborhood_attention(q, k, v, rpb, kernel_size, dilation):
    """As :func:`neighborhood_attention`, through dense masked ``scaled_dot_product_attention``."""
    batch, heads, height, width, head_dim = q.shape
    index, outside = dense_tables(height, width, kernel_size, dilation)
    table = rpb.reshape(heads, -1) if rpb is not None else q.new_zeros(heads, (2 * kernel_size - 1) ** 2)
    bias = table[:, index].masked_fill(outside, float("-inf"))
    q, k, v = (t.reshape(batch, heads, height * width, head_dim) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    return out.reshape(batch, heads, height, width, head_dim)


def use_dense_attention(module, dense=True):
    """Switch every neighbourhood attention of ``module`` to the dense masked path (or back); returns it."""
    for child in module.modules():
        if isinstance(child, NeighborhoodAttention2D):
            child.attention = "dense" if dense else "gather"
    return module


class NeighborhoodAttention2D(nn.Module):
    def __init__(self, dim, num_heads, kernel_size, dilation=1):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.kernel_size, self.dilation = kernel_size, dilation or 1
        self.window_size = self.kernel_size * self.dilation
        self.attention = "gather"
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, H, W, C)
        batch, height, width, channels = x.shape
        pad_h = pad_w = 0
        if height < self.window_size or width < self.window_size:
            pad_h, pad_w = max(0, self.window_size - height), max(0, self.window_size - width)
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(batch, padded_h, padded_w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5)
        attend = dense_neighborhood_attention if self.attention == "dense" else neighborhood_attention
        out = attend(q * self.scale, k, v, self.rpb, self.kernel_size, self.dilation)
        out = out.permute(0, 2, 3, 1, 4).reshape(batch, padded_h, padded_w, channels)
        return self.proj(out[:, :height, :width])


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class NATLayer(nn.Module):
    def __init__(self, dim, num_heads, kernel_size, dilation=1, mlp_ratio=3.0, layer_scale=None):
        super().__init__()
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))
        self.layer_scale = layer_scale is not None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, dilation)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        attended = self.attn(self.norm1(x))
        x = x + (self.gamma1 * attended if self.layer_scale else attended)
        transformed = self.mlp(self.norm2(x))
        return x + (self.gamma2 * transformed if self.layer_scale else transformed)


class ConvTokenizer(nn.Module):
    def __init__(self, in_chans, embed_dim):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_chans, embed_dim // 2, 3, 2, 1),
                                  nn.Conv2d(embed_dim // 2, embed_dim, 3, 2, 1))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):  # NCHW image -> (B, H, W, C)
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsampler(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x):
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATBlock(nn.Module):
    def __init__(self, dim, depth, num_heads, kernel_size, dilations, downsample, mlp_ratio):
        super().__init__()
        self.blocks = nn.ModuleList(NATLayer(dim, num_heads, kernel_size, dilations[i], mlp_ratio)
                                    for i in range(depth))
        self.downsample = ConvDownsampler(dim) if downsample else None

    def forward(self, x):
        for layer in self.blocks:
            x = layer(x)
        return x if self.downsample is None else self.downsample(x)


class NAT(nn.Module):
    def __init__(self, embed_dim, mlp_ratio, depths, num_heads, kernel_size, dilations=None, num_classes=10):
        super().__init__()
        dilations = dilations or [[1] * depth for depth in depths]
        self.patch_embed = ConvTokenizer(3, embed_dim)
        self.levels = nn.ModuleList(
            NATBlock(embed_dim * 2 ** i, depth, num_heads[i], kernel_size, dilations[i], i < len(depths) - 1,
                     mlp_ratio) for i, depth in enumerate(depths))
        features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(features)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):  # NCHW
        x = self.patch_embed(x)
        for level in self.levels:
            x = level(x)
        return self.head(self.norm(x).flatten(1, 2).mean(1))


def randomise(module, seed, scale=0.3):
    """Draw every parameter from N(0, scale^2) (LayerNorm weights around 1), float64, so tests see every term."""
    generator = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            values = scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            is_norm_weight = parameter.ndim == 1 and "norm" in name and name.endswith("weight")
            parameter.copy_(values + 1.0 if is_norm_weight else values)
    return module


def state_numpy(module):
    return {key: value.detach().numpy().copy() for key, value in module.state_dict().items()}


def nchw(images):
    return torch.tensor(np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2))), requires_grad=True)
