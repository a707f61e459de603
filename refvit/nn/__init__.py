"""Modules with parameters, ``state_dict`` and ``train()``/``eval()``, PyTorch's names and shapes.

Feature maps are channels-last ``(B, H, W, C)``; parameters have PyTorch's shapes, so a
PyTorch ``state_dict`` converted to NumPy loads with ``load_state_dict``. See ``docs/nn.md``.
"""
from refvit.nn import init, random
from refvit.nn.activation import GELU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from refvit.nn.container import ModuleList, Sequential
from refvit.nn.conv import Conv2d
from refvit.nn.dropout import DropPath, Dropout, drop_path, dropout
from refvit.nn.linear import Identity, Linear
from refvit.nn.mlp import Mlp
from refvit.nn.module import Module
from refvit.nn.norm import BatchNorm2d, LayerNorm
from refvit.nn.parameter import Parameter, get_default_dtype, set_default_dtype
from refvit.nn.pool import AvgPool2d, MaxPool2d
from refvit.nn.state_dict import IncompatibleKeys

# The architecture families, each a subpackage with the official module names
# (``refvit.nn.nat``, ``.cswin``, ``.smt``, ``.coatnet``, ``.dualvit``); their main modules are
# also exported here.
from refvit.nn import coatnet, cswin, dualvit, nat, smt  # noqa: E402  (they build on the modules above)
from refvit.nn.coatnet import MbConvBlock, RelPosBias, SqueezeExcite, TransformerBlock2d  # noqa: E402
from refvit.nn.cswin import CSWinBlock, LePEAttention  # noqa: E402
from refvit.nn.dualvit import DualAttention, DualBlock, MergeBlock  # noqa: E402
from refvit.nn.nat import NATLayer, NeighborhoodAttention2D  # noqa: E402
from refvit.nn.smt import ConvSelfAttention, ScaleAwareModulation, SMTBlock  # noqa: E402

__all__ = [
    "AvgPool2d", "BatchNorm2d", "Conv2d", "DropPath", "Dropout", "GELU", "Identity", "IncompatibleKeys",
    "LayerNorm", "Linear", "MaxPool2d", "Mlp", "Module", "ModuleList", "Parameter", "ReLU", "Sequential",
    "SiLU", "Sigmoid", "Softmax", "Tanh", "drop_path", "dropout", "get_default_dtype", "init", "random",
    "set_default_dtype",
    # families
    "coatnet", "cswin", "dualvit", "nat", "smt",
    "CSWinBlock", "ConvSelfAttention", "DualAttention", "DualBlock", "MergeBlock", "LePEAttention", "MbConvBlock", "NATLayer", "NeighborhoodAttention2D",
    "RelPosBias", "SMTBlock", "ScaleAwareModulation", "SqueezeExcite", "TransformerBlock2d",
]
