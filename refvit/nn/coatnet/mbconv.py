r"""``MbConvBlock``: CoAtNet's pre-norm inverted bottleneck (MBConv) with squeeze-excitation.

On ``x (B, H, W, in_chs)``, with ``mid = make_divisible(4 * out_chs)`` and ``s`` the stride:

.. math::
    h &= \mathrm{BN}_0(x) \\
    h &= \mathrm{GELU}(\mathrm{BN}_1(W_{1\times1}\, h))            &&\text{(expand to mid)} \\
    h &= \mathrm{GELU}(\mathrm{BN}_2(\mathrm{dw}_{3\times3,\,s}(h)))  &&\text{(depthwise, stride } s) \\
    h &= \mathrm{SE}(h) \\
    y &= \mathrm{shortcut}(x) + \mathrm{drop\_path}(W'_{1\times1}\, h + b')

``shortcut`` is the identity for ``s = 1`` and ``Downsample2d`` (2x2 average pool, then a 1x1
convolution with bias) for ``s = 2``. Names and shapes follow timm's ``MbConvBlock`` for the
``coatnet_0`` configuration (``stride_mode="dw"``, ``expand_output=True``, SE after ``norm2``
with SiLU and ``int(0.25 * out_chs)`` squeeze channels, biased ``conv3_1x1``).
"""
from __future__ import annotations

from refvit.nn.activation import GELU, SiLU
from refvit.nn.coatnet.downsample import Downsample2d
from refvit.nn.coatnet.norm_act import BatchNormAct2d
from refvit.nn.coatnet.squeeze_excite import SqueezeExcite
from refvit.nn.coatnet.pointwise import PointwiseConv2d
from refvit.nn.conv import Conv2d
from refvit.nn.dropout import DropPath
from refvit.nn.linear import Identity
from refvit.nn.module import Module


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), one step up if rounding lost more than ``1 - round_limit`` of it."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


class MbConvBlock(Module):
    """``x (B, H, W, in_chs)`` -> ``(B, H/stride, W/stride, out_chs)``; see the module docstring.

    Children, in timm's order: ``shortcut``, ``pre_norm``, ``down``, ``conv1_1x1``, ``norm1``,
    ``conv2_kxk``, ``norm2``, ``se``, ``conv3_1x1``, ``drop_path``.
    """

    def __init__(self, in_chs, out_chs, *, stride=1, expand_ratio=4.0, kernel_size=3, attn_ratio=0.25,
                 pool_type="avg2", act_layer=GELU, se_act_layer=SiLU, norm_eps=1e-5, drop_path=0.0, dtype=None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MbConvBlock: 'stride' must be 1 or 2; got {stride!r}")
        if stride == 1 and in_chs != out_chs:
            raise ValueError(f"MbConvBlock: 'out_chs' must equal in_chs ({in_chs}) when stride is 1 "
                             f"(the shortcut is the identity); got {out_chs}")
        mid_chs = make_divisible(out_chs * expand_ratio)
        self.in_chs, self.out_chs, self.mid_chs, self.stride = in_chs, out_chs, mid_chs, stride
        self.shortcut = Downsample2d(in_chs, out_chs, pool_type, bias=True, dtype=dtype) if stride == 2 else Identity()
        self.pre_norm = BatchNormAct2d(in_chs, eps=norm_eps, apply_act=False, dtype=dtype)
        self.down = Identity()
        self.conv1_1x1 = PointwiseConv2d(in_chs, mid_chs, bias=False, dtype=dtype)
        self.norm1 = BatchNormAct2d(mid_chs, eps=norm_eps, act_layer=act_layer, dtype=dtype)
        padding = ((stride - 1) + (kernel_size - 1)) // 2  # timm's symmetric padding for a strided conv
        self.conv2_kxk = Conv2d(mid_chs, mid_chs, kernel_size, stride=stride, padding=padding, groups=mid_chs,
                                bias=False, dtype=dtype)
        self.norm2 = BatchNormAct2d(mid_chs, eps=norm_eps, act_layer=act_layer, dtype=dtype)
        self.se = SqueezeExcite(mid_chs, int(attn_ratio * out_chs), act_layer=se_act_layer, dtype=dtype)
        self.conv3_1x1 = PointwiseConv2d(mid_chs, out_chs, bias=True, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()

    def forward(self, x):
        if self.stride == 2 and (x.shape[1] % 2 or x.shape[2] % 2):
            raise ValueError(f"MbConvBlock: 'x' must have an even height and width when stride is 2 (the pooled "
                             f"shortcut and the strided convolution must agree); got shape {tuple(x.shape)}")
        shortcut = self.shortcut(x)
        x = self.down(self.pre_norm(x))
        x = self.norm1(self.conv1_1x1(x))
        x = self.norm2(self.conv2_kxk(x))
        x = self.conv3_1x1(self.se(x))
        return self.drop_path(x) + shortcut

    def extra_repr(self):
        return f"in_chs={self.in_chs}, out_chs={self.out_chs}, mid_chs={self.mid_chs}, stride={self.stride}"
