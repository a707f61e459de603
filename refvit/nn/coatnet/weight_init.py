"""CoAtNet's default initialisation (timm's ``"vit_eff"`` scheme).

* Convolutional parts (stem, MBConv blocks), "EfficientNet-like": every ``Conv2d`` weight
  :math:`\\sim N(0, 2 / \\text{fan\\_out})` with ``fan_out = kh kw C_out / groups``, biases zero.
* Transformer blocks, "ViT-like": every ``Conv2d``/``Linear`` weight Xavier-uniform; biases zero,
  except those under an ``mlp`` child, drawn from :math:`N(0, 10^{-12})`.
* Relative position tables: truncated normal, std 0.02 (done by ``RelPosBias`` itself).
* Norms start at ones and zeros; the head keeps PyTorch's default ``Linear`` initialisation.
"""
from __future__ import annotations

import math

from refvit.nn import init
from refvit.nn.conv import Conv2d
from refvit.nn.linear import Linear


def init_conv_weights(module):
    """EfficientNet-like initialisation of every ``Conv2d`` inside ``module``."""
    for _, child in module.named_modules():
        if isinstance(child, Conv2d):
            kh, kw = child.kernel_size
            fan_out = kh * kw * child.out_channels // child.groups
            init.normal_(child.weight, 0.0, math.sqrt(2.0 / fan_out))
            if child.bias is not None:
                init.zeros_(child.bias)


def init_transformer_weights(module):
    """ViT-like initialisation of every ``Conv2d`` and ``Linear`` inside ``module``."""
    for name, child in module.named_modules():
        if isinstance(child, (Conv2d, Linear)):
            init.xavier_uniform_(child.weight)
            if child.bias is not None:
                if "mlp" in name:
                    init.normal_(child.bias, 0.0, 1e-6)
                else:
                    init.zeros_(child.bias)
