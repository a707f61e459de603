"""CoAtNet's modules (timm ``maxxvit.py`` names and shapes, ``coatnet_0`` configuration).

* :class:`CoAtNetStem`: conv 3x3/2, BatchNorm + GELU, conv 3x3.
* :class:`MbConvBlock`: pre-norm MBConv with :class:`SqueezeExcite`; :class:`BatchNormAct2d`,
  :class:`Downsample2d` (its downsampling shortcut).
* :class:`TransformerBlock2d`: :class:`Attention2d` (head-first ``qkv``, relative attention with
  :class:`RelPosBias`) and :class:`ConvMlp`.
* :class:`CoAtNetStage`, :class:`NormMlpClassifierHead`; :class:`PointwiseConv2d` (a 1x1
  ``Conv2d`` computed by ``ops.linear``) for every 1x1 convolution.

The models themselves are in :mod:`refvit.models.coatnet`; see ``docs/models/coatnet.md``.
"""
from refvit.nn.coatnet.attention import Attention2d
from refvit.nn.coatnet.conv_mlp import ConvMlp
from refvit.nn.coatnet.downsample import Downsample2d
from refvit.nn.coatnet.head import NormMlpClassifierHead
from refvit.nn.coatnet.mbconv import MbConvBlock, make_divisible
from refvit.nn.coatnet.norm_act import BatchNormAct2d
from refvit.nn.coatnet.pointwise import PointwiseConv2d
from refvit.nn.coatnet.rel_pos import RelPosBias
from refvit.nn.coatnet.squeeze_excite import SqueezeExcite
from refvit.nn.coatnet.stage import CoAtNetStage
from refvit.nn.coatnet.stem import CoAtNetStem
from refvit.nn.coatnet.transformer import TransformerBlock2d
from refvit.nn.coatnet.weight_init import init_conv_weights, init_transformer_weights

__all__ = [
    "Attention2d", "BatchNormAct2d", "CoAtNetStage", "CoAtNetStem", "ConvMlp", "Downsample2d", "MbConvBlock",
    "NormMlpClassifierHead", "PointwiseConv2d", "RelPosBias", "SqueezeExcite", "TransformerBlock2d",
    "init_conv_weights", "init_transformer_weights", "make_divisible",
]
