"""A PyTorch CSWin written from the official semantics (token layout ``(B, H*W, C)``,
NCHW convolutions, windows cut with view/permute), with the official parameter names.

It is an independent second implementation: refvit's modules work on channels-last maps and call
``ops.stripe_attention``; this one cuts windows, runs softmax attention and the LePE convolution on
each window with torch ops. The tests check refvit's CSWin against it, and ``refvit bench`` times it (needs torch).
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def to_windows(x, height, width, window_h, window_w, heads):
    """``(B, H*W, C)`` tokens -> ``(B * windows, heads, window_h*window_w, C/heads)``; windows ordered
    (batch, window-row, window-col), tokens row-major inside a window."""
    batch, _, channels = x.shape
    x = x.view(batch, height // window_h, window_h, width // window_w, window_w, channels)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_h * window_w, heads, channels // heads)
    return x.transpose(1, 2)


def from_windows(x, batch, height, width, window_h, window_w):
    """Inverse of :func:`to_windows`: ``(B * windows, heads, N, d)`` -> ``(B, H*W, C)``."""
    x = x.transpose(1, 2).reshape(batch, height // window_h, width // window_w, window_h, window_w, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height * width, -1)


class LePEBranch(nn.Module):
    """``idx`` 0: windows (H, split), 1: (split, W), -1: (H, W). ``pad``: the segmentation backbone's
    zero padding (top/left ``pad // 2``) of q, k, v, then a crop."""

    def __init__(self, dim, heads, idx, split, pad=False):
        super().__init__()
        self.heads, self.idx, self.split, self.pad = heads, idx, split, pad
        self.scale = (dim // heads) ** -0.5
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, q, k, v, height, width):
        window_h, window_w = {-1: (height, width), 0: (height, self.split), 1: (self.split, width)}[self.idx]
        pad_h, pad_w = (window_h - height % window_h) % window_h, (window_w - width % window_w) % window_w
        top, left = pad_h // 2, pad_w // 2
        if self.pad and (pad_h or pad_w):
            def pad(x):
                x = x.transpose(1, 2).reshape(x.shape[0], -1, height, width)
                x = F.pad(x, (left, pad_w - left, top, pad_h - top))
                return x.flatten(2).transpose(1, 2)
            q, k, v = pad(q), pad(k), pad(v)
        padded_h, padded_w = height + pad_h * self.pad, width + pad_w * self.pad
        batch, _, channels = q.shape
        q, k, v = (to_windows(x, padded_h, padded_w, window_h, window_w, self.heads) for x in (q, k, v))
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        # LePE: the depthwise conv on each window as its own (C, window_h, window_w) image.
        windows = v.transpose(2, 3).reshape(-1, channels, window_h, window_w)
        lepe = self.get_v(windows).reshape(-1, self.heads, channels // self.heads, window_h * window_w)
        out = attn @ v + lepe.transpose(2, 3)
        out = from_windows(out, batch, padded_h, padded_w, window_h, window_w)
        if self.pad and (pad_h or pad_w):
            out = out.view(batch, padded_h, padded_w, channels)[:, top:top + height, left:left + width]
            out = out.reshape(batch, height * width, channels)
        return out


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, split, branches, qkv_bias=True, pad=False, mlp_ratio=4.0):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm1 = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        if branches == 1:
            self.attns = nn.ModuleList([LePEBranch(dim, heads, -1, split, pad)])
        else:
            self.attns = nn.ModuleList([LePEBranch(dim // 2, heads // 2, i, split, pad) for i in range(2)])
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x, height, width):
        batch, tokens, channels = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, channels).permute(2, 0, 1, 3)
        if len(self.attns) == 2:
            half = channels // 2
            parts = [branch(*(qkv[i, :, :, j * half:(j + 1) * half] for i in range(3)), height, width)
                     for j, branch in enumerate(self.attns)]
            attended = torch.cat(parts, dim=2)
        else:
            attended = self.attns[0](qkv[0], qkv[1], qkv[2], height, width)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class Tokens(nn.Module):
    """``(B, C, H, W)`` -> ``(B, H*W, C)`` (the official stem's Rearrange step)."""

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


class Merge(nn.Module):
    def __init__(self, dim, dim_out):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, 2, 1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x, height, width):
        x = x.transpose(1, 2).reshape(x.shape[0], -1, height, width)
        x = self.conv(x)
        return self.norm(x.flatten(2).transpose(1, 2)), x.shape[2], x.shape[3]


class CSWin(nn.Module):
    """Input NCHW images; the stage resolutions decide single-branch blocks as the official model."""

    def __init__(self, img_size, num_classes, embed_dim, depth, split, heads):
        super().__init__()
        self.stage1_conv_embed = nn.Sequential(nn.Conv2d(3, embed_dim, 7, 4, 2), Tokens(), nn.LayerNorm(embed_dim))
        dim = embed_dim
        for s in range(4):
            if s:
                setattr(self, f"merge{s}", Merge(dim, 2 * dim))
                dim *= 2
            reso = img_size // 4 // 2 ** s
            branches = 1 if s == 3 or reso == split[s] else 2
            setattr(self, f"stage{s + 1}", nn.ModuleList([Block(dim, heads[s], split[s], branches)
                                                          for _ in range(depth[s])]))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images):
        x = self.stage1_conv_embed[0](images)
        height, width = x.shape[2:]
        x = self.stage1_conv_embed[2](self.stage1_conv_embed[1](x))
        for s in range(4):
            if s:
                x, height, width = getattr(self, f"merge{s}")(x, height, width)
            for block in getattr(self, f"stage{s + 1}"):
                x = block(x, height, width)
        return self.head(self.norm(x).mean(dim=1))


def randomise(module, seed):
    """Draw every parameter from N(0, 0.3^2) (LayerNorm weights around 1), float64, so tests see every term."""
    generator = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            values = 0.3 * torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            is_norm_weight = parameter.ndim == 1 and "norm" in name and name.endswith("weight")
            parameter.copy_(values + 1.0 if is_norm_weight else values)
    return module


def state_numpy(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def nchw(x):
    return torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))), requires_grad=True)
