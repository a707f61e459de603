r"""SMT, the Scale-Aware Modulation Transformer: ``smt_tiny`` (official SMT-T) and ``smt_nano`` (32x32).

Four stages on channels-last maps ``(B, H, W, C)``:

* stage 1: :class:`~refvit.nn.smt.ConvStem` (``/4``), stages 2-4: :class:`~refvit.nn.smt.OverlapPatchEmbed`
  (3x3 conv, stride 2) -> ``patch_embed{i}``;
* ``block{i}``: a ``ModuleList`` of :class:`~refvit.nn.smt.SMTBlock`. Stages with ``ca_attentions[i] = 1``
  use scale-aware modulation, those with 0 self-attention; stage 3 **mixes** them: block ``j`` uses
  modulation for even ``j`` and self-attention for odd ``j`` (the official rule, whatever
  ``ca_attentions[2]`` says);
* ``norm{i}``: ``LayerNorm(C, eps=1e-6)`` after each stage's blocks;
* ``head``: ``Linear`` on the mean over all tokens of the last stage.

State-dict keys and shapes equal those of the official ``models/smt.py`` (``smt_t``), so a
converted PyTorch checkpoint loads with ``load_state_dict``. Stochastic depth grows linearly
from 0 to ``drop_path_rate`` over all blocks.
"""
from __future__ import annotations

import math

import numpy as np

from refvit import functional as F
from refvit.models._registry import check_image_input, check_model_arguments, register_model
from refvit.nn import init
from refvit.nn.container import ModuleList
from refvit.nn.conv import Conv2d
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm
from refvit.nn.smt import ConvStem, OverlapPatchEmbed, SMTBlock

MIXED_STAGE = 2  # zero-based index of the stage that alternates modulation and self-attention


def block_uses_modulation(stage, index, ca_attentions):
    """True when block ``index`` of ``stage`` (both zero-based) is a scale-aware modulation block."""
    if stage == MIXED_STAGE and index % 2 == 1:
        return False
    return ca_attentions[stage] == 1


class SMT(Module):
    """``x (B, H, W, in_chans)`` -> logits ``(B, num_classes)`` (features ``(B, embed_dims[-1])``
    when ``num_classes=0``). Arguments and defaults follow the official ``SMT`` class; ``norm_eps``
    is the eps of the block and stage norms (``1e-6``)."""

    def __init__(self, *, img_size=224, in_chans=3, num_classes=1000, embed_dims=(64, 128, 256, 512),
                 ca_num_heads=(4, 4, 4, -1), sa_num_heads=(-1, -1, 8, 16), mlp_ratios=(8, 6, 4, 2), qkv_bias=False,
                 qk_scale=None, use_layerscale=False, layerscale_value=1e-4, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, norm_eps=1e-6, depths=(2, 2, 8, 1), ca_attentions=(1, 1, 1, 0), num_stages=4,
                 head_conv=3, expand_ratio=2, dtype=None):
        super().__init__()
        for name, values in (("embed_dims", embed_dims), ("ca_num_heads", ca_num_heads),
                             ("sa_num_heads", sa_num_heads), ("mlp_ratios", mlp_ratios), ("depths", depths),
                             ("ca_attentions", ca_attentions)):
            if len(values) < num_stages:
                raise ValueError(f"SMT: '{name}' must give one value per stage ({num_stages}); got {list(values)}")
        check_model_arguments("SMT", num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                              drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        self.model_name, self.in_chans = "SMT", int(in_chans)
        self.img_size, self.num_classes, self.num_stages = img_size, num_classes, num_stages
        self.depths, self.embed_dims = tuple(depths[:num_stages]), tuple(embed_dims[:num_stages])
        drop_path = np.linspace(0.0, drop_path_rate, sum(self.depths)).tolist()
        first = 0
        for stage in range(num_stages):
            if stage == 0:
                patch_embed = ConvStem(head_conv, embed_dims[0], in_chans=in_chans, dtype=dtype)
            else:
                patch_embed = OverlapPatchEmbed(3, 2, embed_dims[stage - 1], embed_dims[stage], dtype=dtype)
            blocks = ModuleList([
                SMTBlock(embed_dims[stage], ca_num_heads[stage], sa_num_heads[stage], mlp_ratio=mlp_ratios[stage],
                         qkv_bias=qkv_bias, qk_scale=qk_scale, use_layerscale=use_layerscale,
                         layerscale_value=layerscale_value, drop=drop_rate, attn_drop=attn_drop_rate,
                         drop_path=drop_path[first + j], norm_eps=norm_eps,
                         ca_attention=1 if block_uses_modulation(stage, j, ca_attentions) else 0,
                         expand_ratio=expand_ratio, dtype=dtype)
                for j in range(depths[stage])])
            first += depths[stage]
            setattr(self, f"patch_embed{stage + 1}", patch_embed)
            setattr(self, f"block{stage + 1}", blocks)
            setattr(self, f"norm{stage + 1}", LayerNorm(embed_dims[stage], eps=norm_eps, dtype=dtype))
        width = embed_dims[num_stages - 1]
        self.head = Linear(width, num_classes, dtype=dtype) if num_classes > 0 else Identity()
        self.apply(_init_weights)

    def forward_features(self, x):
        """``x (B, H, W, in_chans)`` -> the mean of the last stage's normalised tokens ``(B, C)``."""
        check_image_input(self, x)
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                x = block(x)
            x = getattr(self, f"norm{stage}")(x)
        return F.mean(x, (1, 2))

    def forward(self, x):
        return self.head(self.forward_features(x))


def _init_weights(module):
    """The official initialisation: Linear ``trunc_normal(std=.02)``, zero bias; LayerNorm 1, 0;
    Conv2d ``normal(0, sqrt(2 / fan_out))`` with ``fan_out = kh kw out / groups``, zero bias."""
    if isinstance(module, Linear):
        init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, Conv2d):
        kh, kw = module.kernel_size
        fan_out = kh * kw * module.out_channels // module.groups
        init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            init.zeros_(module.bias)


def rename_dw_conv(state_dict):
    """A copy of ``state_dict`` with ``attn.dw_conv.*`` renamed ``attn.local_conv.*``.

    refvit names the self-attention's depthwise 3x3 convolution ``local_conv``, as the official
    ``models/smt.py`` classification code and its segmentation backbone do; a later revision (and
    its detection backbone) renamed it ``dw_conv``. Use this to load a ``state_dict`` saved with
    that revision. The modulation's ``local_conv_{i}`` keys are left alone.
    """
    return {key.replace(".attn.dw_conv.", ".attn.local_conv."): value for key, value in state_dict.items()}


@register_model("smt", 224, "SMT-T: dims 64/128/256/512, depths 2/2/8/1, 11.5M parameters")
def smt_tiny(num_classes=1000, img_size=224, **kwargs):
    """SMT-T (official ``smt_t``): ca heads 4/4/4/-, sa heads -/-/8/16, mlp ratios 4/4/4/2, expand 2."""
    return SMT(img_size=img_size, num_classes=num_classes, embed_dims=(64, 128, 256, 512), ca_num_heads=(4, 4, 4, -1),
               sa_num_heads=(-1, -1, 8, 16), mlp_ratios=(4, 4, 4, 2), qkv_bias=True, depths=(2, 2, 8, 1),
               ca_attentions=(1, 1, 1, 0), head_conv=3, expand_ratio=2, **kwargs)


@register_model("smt", 32, "SMT for 32x32 inputs: dims 32/64/96/128, depths 1/1/2/1 (maps 8/4/2/1)")
def smt_nano(num_classes=10, img_size=32, **kwargs):
    """A small SMT for 32x32 images with every block type: modulation in stages 1-2, the mixed
    stage 3 (one modulation and one self-attention block), self-attention in stage 4."""
    return SMT(img_size=img_size, num_classes=num_classes, embed_dims=(32, 64, 96, 128), ca_num_heads=(4, 4, 4, -1),
               sa_num_heads=(-1, -1, 4, 8), mlp_ratios=(4, 4, 4, 2), qkv_bias=True, depths=(1, 1, 2, 1),
               ca_attentions=(1, 1, 1, 0), head_conv=3, expand_ratio=2, **kwargs)
