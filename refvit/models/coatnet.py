"""CoAtNet (Dai et al. 2021) as timm builds it in ``maxxvit.py``: ``coatnet_0`` and ``coatnet_nano``.

Layout: S0 stem (stride 2), S1-S2 MBConv stages, S3-S4 relative-attention transformer stages
(each stage halves the map in its first block), then ``NormMlpClassifierHead``. ``coatnet_0``
has timm ``coatnet_0_224``'s ``state_dict`` keys, shapes and numerics. See ``docs/models/coatnet.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refvit.models._registry import check_image_input, check_model_arguments, register_model
from refvit.nn.coatnet import (
    CoAtNetStage, CoAtNetStem, MbConvBlock, NormMlpClassifierHead, RelPosBias, TransformerBlock2d,
    init_conv_weights, init_transformer_weights,
)
from refvit.nn.container import Sequential
from refvit.nn.linear import Identity
from refvit.nn.module import Module


@dataclass(frozen=True)
class CoAtNetConfig:
    """Widths, depths and block types of the four stages after the stem."""

    embed_dim: tuple = (96, 192, 384, 768)
    depths: tuple = (2, 3, 5, 2)
    block_types: tuple = ("C", "C", "T", "T")
    stem_width: int = 64
    head_hidden_size: int | None = 768
    dim_head: int = 32
    expand_ratio: float = 4.0


def stage_feature_sizes(img_size, num_stages):
    """Map size after the stem and after each stage: every step is a stride-2 3x3 convolution's
    ``(r - 1) // 2 + 1`` (the stem's) or a stride-2 block, so ``[(H1, W1), ..., (Hn, Wn)]`` per stage."""
    size = tuple((r - 1) // 2 + 1 for r in img_size)
    sizes = []
    for _ in range(num_stages):
        size = tuple((r - 1) // 2 + 1 for r in size)
        sizes.append(size)
    return sizes


class CoAtNet(Module):
    """``x (B, H, W, in_chans)`` -> logits ``(B, num_classes)``.

    Children ``stem``, ``stages`` (``stages.<i>.blocks.<j>``), ``norm`` (the identity when the head
    has its own norm, as in CoAtNet-0) and ``head``. ``drop_path_rate`` rises linearly over all
    blocks; ``drop_rate`` is the dropout before the classifier.
    """

    def __init__(self, cfg=CoAtNetConfig(), img_size=224, in_chans=3, num_classes=1000, drop_rate=0.0,
                 drop_path_rate=0.0, dtype=None):
        super().__init__()
        img_size = check_model_arguments("CoAtNet", num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                                         drop_rate=drop_rate, drop_path_rate=drop_path_rate)["img_size"]
        stage_sizes = stage_feature_sizes(img_size, len(cfg.embed_dim))
        if any(min(size) < 1 for size in stage_sizes):
            raise ValueError(f"CoAtNet: 'img_size' must leave at least one pixel after {len(stage_sizes) + 1} "
                             f"halvings; got {img_size}")
        self.img_size, self.num_classes, self.cfg = img_size, num_classes, cfg
        self.model_name, self.in_chans, self.stage_sizes = "CoAtNet", int(in_chans), stage_sizes
        self.stem = CoAtNetStem(in_chans, cfg.stem_width, dtype=dtype)
        rates = np.linspace(0.0, drop_path_rate, sum(cfg.depths)).tolist()
        stages, in_chs, start = [], self.stem.out_chs, 0
        for out_chs, depth, block_type, feat_size in zip(cfg.embed_dim, cfg.depths, cfg.block_types, stage_sizes):
            stages.append(CoAtNetStage(
                in_chs, out_chs, depth, block_type, feat_size, drop_path=rates[start:start + depth],
                conv_kwargs=dict(expand_ratio=cfg.expand_ratio),
                transformer_kwargs=dict(dim_head=cfg.dim_head, expand_ratio=cfg.expand_ratio), dtype=dtype))
            in_chs, start = out_chs, start + depth
        self.stages = Sequential(*stages)
        self.num_features = cfg.embed_dim[-1]
        self.norm = Identity()
        self.head = NormMlpClassifierHead(self.num_features, num_classes, hidden_size=cfg.head_hidden_size,
                                          drop_rate=drop_rate, dtype=dtype)
        self.init_weights()

    def init_weights(self):
        """timm's ``"vit_eff"`` scheme (see :mod:`refvit.nn.coatnet.weight_init`)."""
        init_conv_weights(self.stem)
        for module in self.stages.modules():
            if isinstance(module, MbConvBlock):
                init_conv_weights(module)
            elif isinstance(module, TransformerBlock2d):
                init_transformer_weights(module)
            elif isinstance(module, RelPosBias):
                module.init_weights()

    def takes_size(self, size):
        """Whether ``(H, W)`` images run: the stem gives ``(r - 1) // 2 + 1``, then each stage halves
        the map (``r // 2``); an MBConv stage needs an even map, a transformer stage's map must be the
        one its bias tables were built for (that of ``img_size``)."""
        size = tuple((r - 1) // 2 + 1 for r in size)
        for block_type, expected in zip(self.cfg.block_types, self.stage_sizes):
            if block_type == "C" and any(r % 2 for r in size):
                return False
            size = tuple(r // 2 for r in size)
            if block_type == "T" and size != tuple(expected):
                return False
        return True

    def forward_features(self, x):
        """``(B, H, W, in_chans)`` -> the last stage's map ``(B, H/32, W/32, embed_dim[-1])``.

        The relative-position tables fix each stage's map size, so ``H, W`` must give the stage
        sizes of ``img_size`` (``img_size`` itself, or a size that rounds to the same maps).
        """
        shape = tuple(getattr(x, "shape", ()))
        check_image_input(self, x, size=self.img_size, size_ok=len(shape) == 4 and self.takes_size(shape[1:3]))
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x, pre_logits=False):
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


COATNET_0 = CoAtNetConfig()
COATNET_NANO = CoAtNetConfig(embed_dim=(32, 64, 128, 192), depths=(1, 2, 2, 1), stem_width=32,
                             head_hidden_size=192)


@register_model("coatnet", 224, "CoAtNet-0 (timm coatnet_0_224): 2-3-5-2 blocks, widths 96-768, 25M parameters")
def coatnet_0(num_classes=1000, img_size=224, drop_rate=0.0, drop_path_rate=0.0, **kwargs):
    return CoAtNet(COATNET_0, img_size=img_size, num_classes=num_classes, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate, **kwargs)


@register_model("coatnet", 32, "CoAtNet for 32x32 inputs: 1-2-2-1 blocks, widths 32-192, all block types")
def coatnet_nano(num_classes=10, img_size=32, drop_rate=0.0, drop_path_rate=0.0, **kwargs):
    return CoAtNet(COATNET_NANO, img_size=img_size, num_classes=num_classes, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate, **kwargs)
