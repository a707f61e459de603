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

__all__ = [
    "AvgPool2d", "BatchNorm2d", "Conv2d", "DropPath", "Dropout", "GELU", "Identity", "IncompatibleKeys",
    "LayerNorm", "Linear", "MaxPool2d", "Mlp", "Module", "ModuleList", "Parameter", "ReLU", "Sequential",
    "SiLU", "Sigmoid", "Softmax", "Tanh", "drop_path", "dropout", "get_default_dtype", "init", "random",
    "set_default_dtype",
]
