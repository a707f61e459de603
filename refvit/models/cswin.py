r"""CSWin Transformer (microsoft/CSWin-Transformer ``models/cswin.py``): ``cswin_tiny`` and ``cswin_nano``.

``x (B, H, W, in_chans)`` -> stem (conv 7x7 stride 4, LayerNorm) -> ``stage1`` -> ``merge1`` ->
``stage2`` -> ``merge2`` -> ``stage3`` -> ``merge3`` -> ``stage4`` -> ``norm`` -> mean over
tokens -> ``head`` -> logits ``(B, num_classes)``. Each merge halves the map and doubles the
channels. Stage ``i`` runs at resolution ``img_size / 2^(i+2)`` with stripes of width
``split_size[i]``; the blocks of the last stage, and of any stage whose resolution equals its
split size, have one full-map branch. ``stage1..4`` are ``ModuleList``\ s of :class:`CSWinBlock`,
as in the official code, so the ``state_dict`` keys are the official ones
(``stage3.20.attns.1.get_v.weight``, ``merge2.conv.weight``, ``stage1_conv_embed.2.bias``, ...).

Initialisation as the official model: Linear weights truncated normal (std 0.02) with zero
biases, LayerNorm ones and zeros, convolutions PyTorch's default.
"""
from __future__ import annotations

import numpy as np

from refvit import functional as F
from refvit._validate import check_int
from refvit.models._registry import check_image_input, check_model_arguments, register_model
from refvit.nn import init
from refvit.nn.container import ModuleList
from refvit.nn.cswin import CSWinBlock, MergeBlock, conv_embed
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


class CSWinTransformer(Module):
    """CSWin classifier on channels-last images ``(B, H, W, in_chans)`` -> logits ``(B, num_classes)``.

    ``depth``, ``split_size`` and ``num_heads`` have one entry per stage; ``embed_dim`` doubles
    at each stage. ``img_size`` fixes the stage resolutions that decide which blocks have a
    single full-map branch (the official ``reso == split_size`` rule). ``drop_path_rate`` grows
    linearly from 0 over all blocks. ``pad_to_stripes`` zero-pads maps that the stripes do not
    divide (the official segmentation backbone's behaviour) instead of raising.
    """

    def __init__(self, *, img_size=224, in_chans=3, num_classes=1000, embed_dim=64, depth=(1, 2, 21, 1),
                 split_size=(1, 2, 7, 7), num_heads=(2, 4, 8, 16), mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
                 drop_rate=0.0, drop_path_rate=0.0, pad_to_stripes=False, dtype=None):
        super().__init__()
        if not (len(depth) == len(split_size) == len(num_heads) == 4):
            raise ValueError(f"CSWinTransformer: 'depth', 'split_size', 'num_heads' must have 4 entries (one per "
                             f"stage); got {len(depth)}, {len(split_size)}, {len(num_heads)}")
        check_model_arguments("CSWinTransformer", num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                              drop_path_rate=drop_path_rate)
        self.model_name, self.in_chans = "CSWinTransformer", int(in_chans)
        self.num_classes, self.img_size = int(num_classes), check_int("CSWinTransformer", "img_size", img_size, 1)
        self.stage1_conv_embed = conv_embed(in_chans, embed_dim, dtype)
        drop_path = [float(p) for p in np.linspace(0.0, drop_path_rate, int(sum(depth)))]
        dim, first = embed_dim, 0
        for stage in range(4):
            if stage > 0:
                setattr(self, f"merge{stage}", MergeBlock(dim, 2 * dim, dtype))
                dim *= 2
            blocks = [CSWinBlock(dim, num_heads[stage], split_size=split_size[stage], mlp_ratio=mlp_ratio,
                                 qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate, drop_path=drop_path[first + i],
                                 last_stage=stage == 3, reso=img_size // 4 // 2 ** stage,
                                 pad_to_stripes=pad_to_stripes, dtype=dtype)
                      for i in range(depth[stage])]
            setattr(self, f"stage{stage + 1}", ModuleList(blocks))
            first += depth[stage]
        self.num_features = dim
        self.norm = LayerNorm(dim, dtype=dtype)
        self.head = Linear(dim, num_classes, dtype=dtype) if num_classes > 0 else Identity()
        self.apply(_init_weights)

    def forward_features(self, x):
        """``(B, H, W, in_chans)`` -> pooled features ``(B, num_features)``."""
        check_image_input(self, x)
        x = self.stage1_conv_embed(x)
        for stage in range(1, 5):
            if stage > 1:
                x = getattr(self, f"merge{stage - 1}")(x)
            for block in getattr(self, f"stage{stage}"):
                x = block(x)
        return F.mean(self.norm(x), axis=(1, 2))

    def forward(self, x):
        return self.head(self.forward_features(x))


def _init_weights(module):
    if isinstance(module, Linear):
        init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, LayerNorm) and module.weight is not None:
        init.ones_(module.weight)
        init.zeros_(module.bias)


@register_model("cswin", 224, "CSWin-T (official CSWin_64_12211_tiny_224): C 64, depths 1/2/21/1, "
                              "split 1/2/7/7, heads 2/4/8/16")
def cswin_tiny(num_classes=1000, img_size=224, **kwargs):
    return CSWinTransformer(img_size=img_size, num_classes=num_classes, embed_dim=64, depth=(1, 2, 21, 1),
                            split_size=(1, 2, 7, 7), num_heads=(2, 4, 8, 16), mlp_ratio=4.0, **kwargs)


@register_model("cswin", 32, "CSWin nano for 32x32: C 32, depths 1/2/2/1, split 2/2/1/1 (maps 8/4/2/1), "
                             "heads 2/4/8/16")
def cswin_nano(num_classes=10, img_size=32, **kwargs):
    return CSWinTransformer(img_size=img_size, num_classes=num_classes, embed_dim=32, depth=(1, 2, 2, 1),
                            split_size=(2, 2, 1, 1), num_heads=(2, 4, 8, 16), mlp_ratio=4.0, **kwargs)
