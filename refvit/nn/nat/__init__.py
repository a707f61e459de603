"""NAT / DiNAT modules: neighbourhood attention (with dilation), the layer, a level, the stem and downsampler.

Names and ``state_dict`` keys follow SHI-Labs/Neighborhood-Attention-Transformer
``classification/nat.py`` and NATTEN's ``NeighborhoodAttention2D``; the models are in
:mod:`refvit.models.dinat`. See ``docs/models/dinat.md``.
"""
from refvit.nn.nat.attention import NeighborhoodAttention2D
from refvit.nn.nat.embed import ConvDownsampler, ConvTokenizer
from refvit.nn.nat.layer import NATLayer
from refvit.nn.nat.level import NATBlock

__all__ = ["ConvDownsampler", "ConvTokenizer", "NATBlock", "NATLayer", "NeighborhoodAttention2D"]
