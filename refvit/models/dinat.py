r"""NAT and DiNAT (SHI-Labs/Neighborhood-Attention-Transformer ``classification/nat.py``, ``dinat.py``).

``x (B, H, W, in_chans)`` -> ``patch_embed`` (two strided 3x3 convs, LayerNorm: ``H/4``) ->
``levels.0`` ... ``levels.{L-1}`` (each :class:`~refvit.nn.nat.NATBlock`: NAT layers at one
resolution, then a downsampler halving the map and doubling the channels, except the last) ->
``norm`` -> mean over tokens -> ``head`` -> logits ``(B, num_classes)``.

DiNAT is NAT with dilations: ``dilations[level][layer]``; NAT has all dilations 1. At 224x224
the maps are 56/28/14/7 and the official DiNAT dilations are ``[1, 8, 1]``, ``[1, 4, 1, 4]``,
``[1, 2] * ...``, all 1 (each level starts with plain NA). Maps smaller than ``kernel * dilation``
are zero-padded inside the attention module (see :class:`~refvit.nn.nat.NeighborhoodAttention2D`).

Models: ``nat_mini``, ``nat_tiny`` (family ``nat``), ``dinat_mini``, ``dinat_tiny`` (family
``dinat``), all official configurations at 224; and ``nat_nano``, ``dinat_nano`` for 32x32 inputs.

Initialisation as the official model: Linear weights truncated normal (std 0.02) with zero
biases, LayerNorm ones and zeros, ``rpb`` truncated normal (std 0.02), convolutions PyTorch's
default. ``drop_path_rate`` grows linearly from 0 over all layers; the official variants'
training rate (0.2) is not the default here, so a model built without arguments is deterministic.
"""
from __future__ import annotations

import numpy as np

from refvit import functional as F
from refvit.models._registry import check_image_input, check_model_arguments, register_model
from refvit.nn import init
from refvit.nn.container import ModuleList
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.nat import ConvTokenizer, NATBlock
from refvit.nn.norm import LayerNorm


class NAT(Module):
    """NAT / DiNAT classifier on channels-last images ``(B, H, W, in_chans)`` -> logits ``(B, num_classes)``.

    ``depths`` and ``num_heads`` have one entry per level; the channels double at each level
    (``embed_dim * 2**i``). ``dilations`` is ``None`` (NAT) or one list per level with one
    dilation per layer (DiNAT). ``layer_scale`` (a number) adds ``gamma1, gamma2`` to every layer.
    ``img_size`` is recorded for the registry; any input size works.
    """

    def __init__(self, embed_dim, mlp_ratio, depths, num_heads, *, drop_path_rate=0.0, in_chans=3, kernel_size=7,
                 dilations=None, num_classes=1000, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 norm_layer=LayerNorm, layer_scale=None, img_size=224, dtype=None):
        super().__init__()
        if len(depths) != len(num_heads) or (dilations is not None and len(dilations) != len(depths)):
            raise ValueError(f"NAT: 'depths', 'num_heads' (and 'dilations') must have one entry per level; got "
                             f"{len(depths)}, {len(num_heads)}" + ("" if dilations is None else f", {len(dilations)}"))
        check_model_arguments(type(self).__name__, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                              drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        self.model_name, self.in_chans = type(self).__name__, int(in_chans)
        self.num_classes, self.num_levels = int(num_classes), len(depths)
        self.img_size = int(img_size) if not isinstance(img_size, (tuple, list)) else tuple(map(int, img_size))
        self.embed_dim, self.mlp_ratio, self.kernel_size = int(embed_dim), mlp_ratio, int(kernel_size)
        self.num_features = int(embed_dim * 2 ** (self.num_levels - 1))
        self.patch_embed = ConvTokenizer(in_chans, embed_dim, norm_layer=norm_layer, dtype=dtype)
        self.pos_drop = Dropout(drop_rate)
        rates = [float(p) for p in np.linspace(0.0, drop_path_rate, int(sum(depths)))]
        levels, first = [], 0
        for i, depth in enumerate(depths):
            levels.append(NATBlock(int(embed_dim * 2 ** i), depth, num_heads[i], kernel_size,
                                   dilations=None if dilations is None else dilations[i],
                                   downsample=i < self.num_levels - 1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                   qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                                   drop_path=rates[first:first + depth], norm_layer=norm_layer,
                                   layer_scale=layer_scale, dtype=dtype))
            first += depth
        self.levels = ModuleList(levels)
        self.norm = norm_layer(self.num_features, dtype=dtype)
        self.head = Linear(self.num_features, num_classes, dtype=dtype) if num_classes > 0 else Identity()
        self.apply(_init_weights)

    def no_weight_decay_keywords(self):
        """Parameter names containing these words get no weight decay (the official training recipe)."""
        return {"rpb"}

    def forward_features(self, x):
        """``(B, H, W, in_chans)`` (any ``H, W``) -> pooled features ``(B, num_features)``."""
        check_image_input(self, x)
        x = self.pos_drop(self.patch_embed(x))
        for level in self.levels:
            x = level(x)
        return F.mean(self.norm(x), axis=(1, 2))

    def forward(self, x):
        return self.head(self.forward_features(x))


class DiNAT(NAT):
    """NAT with dilations: the official ``DiNAT`` adds nothing else."""


def _init_weights(module):
    if isinstance(module, Linear):
        init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, LayerNorm) and module.weight is not None:
        init.ones_(module.weight)
        init.zeros_(module.bias)


MINI = dict(depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), embed_dim=64, mlp_ratio=3.0, kernel_size=7)
TINY = dict(MINI, depths=(3, 4, 18, 5))
NANO = dict(depths=(2, 2, 4), num_heads=(1, 2, 4), embed_dim=32, mlp_ratio=3.0, kernel_size=3)


def dinat_dilations(depths, pattern):
    """Per-level dilations that alternate plain NA (1) and DiNA (``pattern[level]``), starting with NA."""
    return [[1 if i % 2 == 0 else pattern[level] for i in range(depth)] for level, depth in enumerate(depths)]


@register_model("nat", 224, "NAT-Mini: C 64, depths 3/4/6/5, heads 2/4/8/16, mlp 3, kernel 7")
def nat_mini(num_classes=1000, img_size=224, **kwargs):
    return NAT(num_classes=num_classes, img_size=img_size, **{**MINI, **kwargs})


@register_model("nat", 224, "NAT-Tiny: C 64, depths 3/4/18/5, heads 2/4/8/16, mlp 3, kernel 7")
def nat_tiny(num_classes=1000, img_size=224, **kwargs):
    return NAT(num_classes=num_classes, img_size=img_size, **{**TINY, **kwargs})


@register_model("dinat", 224, "DiNAT-Mini: NAT-Mini with dilations [1,8,1], [1,4,1,4], [1,2]*3, 1s")
def dinat_mini(num_classes=1000, img_size=224, **kwargs):
    config = dict(MINI, dilations=dinat_dilations(MINI["depths"], (8, 4, 2, 1)))
    return DiNAT(num_classes=num_classes, img_size=img_size, **{**config, **kwargs})


@register_model("dinat", 224, "DiNAT-Tiny: NAT-Tiny with dilations [1,8,1], [1,4,1,4], [1,2]*9, 1s")
def dinat_tiny(num_classes=1000, img_size=224, **kwargs):
    config = dict(TINY, dilations=dinat_dilations(TINY["depths"], (8, 4, 2, 1)))
    return DiNAT(num_classes=num_classes, img_size=img_size, **{**config, **kwargs})


@register_model("nat", 32, "NAT nano for 32x32: C 32, depths 2/2/4 (maps 8/4/2), heads 1/2/4, kernel 3")
def nat_nano(num_classes=10, img_size=32, **kwargs):
    return NAT(num_classes=num_classes, img_size=img_size, **{**NANO, **kwargs})


@register_model("dinat", 32, "DiNAT nano for 32x32: NAT nano with dilations [1,2], [1,1], [1,1,1,1]")
def dinat_nano(num_classes=10, img_size=32, **kwargs):
    config = dict(NANO, dilations=dinat_dilations(NANO["depths"], (2, 1, 1)))
    return DiNAT(num_classes=num_classes, img_size=img_size, **{**config, **kwargs})
