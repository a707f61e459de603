r"""DualViT (YehLi/ImageNetModel ``classification/dualvit.py``): ``dualvit_s`` and ``dualvit_nano``.

``images (B, H, W, in_chans)`` -> ``patch_embed1`` (:class:`Stem`, map ``/4``) -> semantic tokens
from the stem output (``q``, ``q_embed``, ``kv``, ``se``, ``proxy_ln``: :mod:`refvit.nn.dualvit.semantic`).

* Stages 1-2 (``block1``, ``block2``): :class:`DualBlock`\ s on the pixel tokens and the semantic
  tokens; after each stage ``norm{i}`` on the pixels and ``norm_proxy{i}`` on the semantic tokens.
* Stage 2 and later start with ``patch_embed{i}`` (:class:`DownSamples`, map ``/2``) on the pixels
  and ``proxy_embed{i}`` (:class:`SemanticEmbed`) on the semantic tokens.
* Stages 3-4 (``block3``, ``block4``): :class:`MergeBlock`\ s on ``[pixels; semantic tokens]``;
  stage 3's odd-numbered blocks use ``mlp_ratios[2] - 1``. Stage 3 ends with ``norm3`` and
  ``norm_proxy3``; stage 4 has no norm of its own before the head.
* Head: class token = mean of all ``n + m`` tokens, prepended; ``post_network.0``
  (:class:`ClassBlock`, FFN ratio ``mlp_ratios[-1]``); ``norm4`` on every token; ``head`` on the
  class token. With ``token_label=True`` (the official default) the logits add
  ``0.5 * max over the pixel tokens of aux_head(token)`` (:func:`token_label_logits`), in
  training as in evaluation; :meth:`DualViT.forward_dense` returns both parts for a token-labelling
  loss. The official training-time mix-token augmentation (a cut-mix of stem features) is not part
  of the model here.

Initialisation as the official model: Linear weights truncated normal (std 0.02), zero biases;
LayerNorm ones/zeros; Conv2d weights :math:`N(0, 2/\text{fan\_out})`, ``fan_out = kh kw C_out / groups``,
zero biases; the queries ``q`` truncated normal (std 0.02); layer scales 1e-6.
"""
from __future__ import annotations

import math

import numpy as np

from refvit import functional as F
from refvit.models._registry import check_image_input, check_model_arguments, register_model
from refvit.nn import init
from refvit.nn.container import ModuleList
from refvit.nn.conv import Conv2d
from refvit.nn.dualvit import (
    ClassBlock, DownSamples, DualBlock, MergeBlock, SemanticEmbed, Stem, initial_semantic_tokens,
    semantic_init_parts, token_label_logits,
)
from refvit.nn.dualvit.tokens import map_to_tokens, tokens_to_map
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm

SEPARATE_STAGES = 2  # stages 1-2 keep two paths; stages 3-4 merge them


class DualViT(Module):
    """DualViT classifier on ``(B, H, W, in_chans)`` images -> logits ``(B, num_classes)``.

    ``embed_dims``, ``num_heads``, ``depths`` have 4 entries; ``mlp_ratios`` 4 or 5 (the last
    one is the head's FFN ratio). ``num_semantic_tokens`` queries (a square number) and the
    ``semantic_pool`` window (stride = window) make the stage-1 semantic tokens; ``norm_eps`` is
    the block and stage norms' eps. ``drop_path_rate`` grows linearly from 0 over all blocks.
    """

    def __init__(self, *, img_size=224, in_chans=3, num_classes=1000, stem_hidden_dim=32,
                 embed_dims=(64, 128, 320, 448), num_heads=(2, 4, 10, 14), mlp_ratios=(8, 8, 4, 3, 2),
                 depths=(3, 4, 6, 3), drop_path_rate=0.0, norm_eps=1e-6, token_label=True, num_semantic_tokens=64,
                 semantic_pool=7, dtype=None):
        super().__init__()
        if not (len(embed_dims) == len(num_heads) == len(depths) == 4 and len(mlp_ratios) in (4, 5)):
            raise ValueError(f"DualViT: 'embed_dims', 'num_heads', 'depths' need 4 entries and 'mlp_ratios' 4 or 5; "
                             f"got {len(embed_dims)}, {len(num_heads)}, {len(depths)}, {len(mlp_ratios)}")
        check_model_arguments("DualViT", num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                              drop_path_rate=drop_path_rate)
        self.model_name, self.in_chans = "DualViT", int(in_chans)
        self.img_size = int(img_size) if not isinstance(img_size, (tuple, list)) else tuple(map(int, img_size))
        self.num_classes, self.semantic_pool = int(num_classes), int(semantic_pool)
        self.token_label = bool(token_label)
        drop_path = [float(p) for p in np.linspace(0.0, drop_path_rate, int(sum(depths)))]
        first = 0
        for stage in range(4):
            dim = embed_dims[stage]
            if stage == 0:
                patch_embed = Stem(in_chans, stem_hidden_dim, dim, dtype=dtype)
                for name, part in semantic_init_parts(dim, num_semantic_tokens, dtype).items():
                    setattr(self, name, part)
            else:
                patch_embed = DownSamples(embed_dims[stage - 1], dim, dtype=dtype)
                setattr(self, f"proxy_embed{stage + 1}", SemanticEmbed(embed_dims[stage - 1], dim, dtype=dtype))
            if stage < SEPARATE_STAGES:
                blocks = [DualBlock(dim, num_heads[stage], mlp_ratios[stage], drop_path[first + j], norm_eps,
                                    dtype=dtype) for j in range(depths[stage])]
            else:
                blocks = [MergeBlock(dim, num_heads[stage], _merge_ratio(mlp_ratios, stage, j),
                                     drop_path[first + j], norm_eps, dtype=dtype) for j in range(depths[stage])]
            first += depths[stage]
            setattr(self, f"patch_embed{stage + 1}", patch_embed)
            setattr(self, f"block{stage + 1}", ModuleList(blocks))
            setattr(self, f"norm{stage + 1}", LayerNorm(dim, eps=norm_eps, dtype=dtype))
            if stage != 3:
                setattr(self, f"norm_proxy{stage + 1}", LayerNorm(dim, eps=norm_eps, dtype=dtype))
        dim = self.num_features = embed_dims[-1]
        self.post_network = ModuleList([ClassBlock(dim, num_heads[-1], mlp_ratios[-1], norm_eps, dtype=dtype)])
        self.head = Linear(dim, num_classes, dtype=dtype) if num_classes > 0 else Identity()
        if self.token_label:
            self.aux_head = Linear(dim, num_classes, dtype=dtype) if num_classes > 0 else Identity()
        self.apply(_init_weights)

    def semantic_tokens(self, x):
        """Initial semantic tokens ``(B, m, C1)`` from the stem output ``x (B, H, W, C1)``."""
        return initial_semantic_tokens(x, self.semantic_pool, self.q, self.q_embed, self.kv, self.se, self.proxy_ln)

    def forward_sep(self, images):
        """Stem and stages 1-2: ``-> (pixel map (B, H2, W2, C2), semantic tokens (B, m, C2))``."""
        check_image_input(self, images)
        x = self.patch_embed1(images)
        semantics = self.semantic_tokens(x)
        for stage in range(1, SEPARATE_STAGES + 1):
            if stage > 1:
                x = getattr(self, f"patch_embed{stage}")(x)
                semantics = getattr(self, f"proxy_embed{stage}")(semantics)
            _, height, width, _ = tuple(x.shape)
            tokens = map_to_tokens(x)
            for block in getattr(self, f"block{stage}"):
                tokens, semantics = block(tokens, height, width, semantics)
            x = tokens_to_map(getattr(self, f"norm{stage}")(tokens), height, width)
            semantics = getattr(self, f"norm_proxy{stage}")(semantics)
        return x, semantics

    def forward_merge(self, x, semantics):
        """Stages 3-4: ``-> (tokens (B, n4 + m, C4) = [pixels; semantic tokens], n4)``."""
        for stage in range(SEPARATE_STAGES + 1, 5):
            x = getattr(self, f"patch_embed{stage}")(x)
            semantics = getattr(self, f"proxy_embed{stage}")(semantics)
            _, height, width, _ = tuple(x.shape)
            pixels = height * width
            tokens = F.concatenate([map_to_tokens(x), semantics], axis=1)
            for block in getattr(self, f"block{stage}"):
                tokens = block(tokens, height, width)
            if stage == 4:
                return tokens, pixels
            x, semantics = F.split(tokens, [pixels, tuple(tokens.shape)[1] - pixels], axis=1)
            x = tokens_to_map(getattr(self, f"norm{stage}")(x), height, width)
            semantics = getattr(self, f"norm_proxy{stage}")(semantics)

    def forward_features(self, images):
        """``-> (normalised tokens (B, 1 + n4 + m, C4): [class; pixels; semantic], n4)``."""
        tokens, pixels = self.forward_merge(*self.forward_sep(images))
        tokens = F.concatenate([F.mean(tokens, axis=1, keepdims=True), tokens], axis=1)
        for block in self.post_network:
            tokens = block(tokens)
        return self.norm4(tokens), pixels

    def forward_dense(self, images):
        """``-> (head(class token) (B, K), aux_head(pixel tokens) (B, n4, K))`` (token labelling)."""
        if not self.token_label:
            raise ValueError("DualViT.forward_dense: the model was built with token_label=False (no 'aux_head')")
        tokens, pixels = self.forward_features(images)
        class_token, pixel_tokens, _ = F.split(tokens, [1, pixels, tuple(tokens.shape)[1] - 1 - pixels], axis=1)
        return self.head(F.reshape(class_token, (tuple(tokens.shape)[0], -1))), self.aux_head(pixel_tokens)

    def forward(self, images):
        if self.token_label:
            return token_label_logits(*self.forward_dense(images))
        tokens, _ = self.forward_features(images)
        return self.head(F.reshape(F.getitem(tokens, (slice(None), 0)), (tuple(tokens.shape)[0], -1)))


def _merge_ratio(mlp_ratios, stage, index):
    """The official rule: stage 3's odd-numbered blocks use ``mlp_ratios[2] - 1``."""
    return mlp_ratios[stage] - 1 if stage == 2 and index % 2 == 1 else mlp_ratios[stage]


def _init_weights(module):
    if isinstance(module, Linear):
        init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, LayerNorm) and module.weight is not None:
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, Conv2d):
        kh, kw = module.kernel_size
        init.normal_(module.weight, 0.0, math.sqrt(2.0 / (kh * kw * module.out_channels // module.groups)))
        if module.bias is not None:
            init.zeros_(module.bias)


@register_model("dualvit", 224, "DualViT-S (official dualvit_s): dims 64/128/320/448, heads 2/4/10/14, "
                                "mlp ratios 8/8/4/3 (head 2), depths 3/4/6/3, 64 semantic tokens, token labelling")
def dualvit_s(num_classes=1000, img_size=224, **kwargs):
    return DualViT(img_size=img_size, num_classes=num_classes, stem_hidden_dim=32, embed_dims=(64, 128, 320, 448),
                   num_heads=(2, 4, 10, 14), mlp_ratios=(8, 8, 4, 3, 2), depths=(3, 4, 6, 3), **kwargs)


@register_model("dualvit", 32, "DualViT nano for 32x32: dims 32/64/96/128, heads 1/2/3/4, mlp ratios 4/4/3/2 "
                               "(head 2), depths 1/1/2/1, 4 semantic tokens (pool 4 on the 8x8 stem map)")
def dualvit_nano(num_classes=10, img_size=32, **kwargs):
    kwargs.setdefault("num_semantic_tokens", 4)
    kwargs.setdefault("semantic_pool", 4)
    return DualViT(img_size=img_size, num_classes=num_classes, stem_hidden_dim=16, embed_dims=(32, 64, 96, 128),
                   num_heads=(1, 2, 3, 4), mlp_ratios=(4, 4, 3, 2, 2), depths=(1, 1, 2, 1), **kwargs)
