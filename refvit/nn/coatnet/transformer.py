r"""``TransformerBlock2d``: CoAtNet's pre-norm relative-attention block on a 2-D map.

On ``x (B, H, W, dim)``:

.. math::
    x &\leftarrow \mathrm{shortcut}(x) + \mathrm{DropPath}(\mathrm{Attn}(\mathrm{down}(\mathrm{LN}_1(x)))) \\
    x &\leftarrow x + \mathrm{DropPath}(\mathrm{ConvMlp}(\mathrm{LN}_2(x)))

LayerNorms over channels with ``eps = 1e-6``. With ``stride = 2`` (a stage's first block)
``norm1`` is ``Sequential(norm, down)``: LayerNorm, then a 2x2 average pool; the shortcut is
``Downsample2d`` (2x2 average pool and a 1x1 convolution ``dim -> dim_out`` with bias).
``ConvMlp`` expands by ``expand_ratio`` (4) with exact GELU. Names follow timm's
``TransformerBlock2d`` (``ls1``/``ls2`` are identities: CoAtNet has no layer scale).
"""
from __future__ import annotations

from collections import OrderedDict

from refvit.nn.activation import GELU
from refvit.nn.coatnet.attention import Attention2d
from refvit.nn.coatnet.conv_mlp import ConvMlp
from refvit.nn.coatnet.downsample import Downsample2d
from refvit.nn.container import Sequential
from refvit.nn.dropout import DropPath
from refvit.nn.linear import Identity
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


class TransformerBlock2d(Module):
    """``x (B, H, W, dim)`` -> ``(B, H/stride, W/stride, dim_out)``.

    ``window_size`` is the map size the attention sees (after the stride), for the bias table.
    """

    def __init__(self, dim, dim_out, window_size, *, stride=1, dim_head=32, expand_ratio=4.0, pool_type="avg2",
                 norm_eps=1e-6, act_layer=GELU, proj_drop=0.0, drop_path=0.0, dtype=None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"TransformerBlock2d: 'stride' must be 1 or 2; got {stride!r}")
        if stride == 1 and dim != dim_out:
            raise ValueError(f"TransformerBlock2d: 'dim_out' must equal dim ({dim}) when stride is 1; got {dim_out}")
        self.stride = stride
        if stride == 2:
            self.shortcut = Downsample2d(dim, dim_out, pool_type, bias=True, dtype=dtype)
            self.norm1 = Sequential(OrderedDict([
                ("norm", LayerNorm(dim, eps=norm_eps, dtype=dtype)),
                ("down", Downsample2d(dim, dim, pool_type, dtype=dtype)),
            ]))
        else:
            self.shortcut = Identity()
            self.norm1 = LayerNorm(dim, eps=norm_eps, dtype=dtype)
        self.attn = Attention2d(dim, dim_out, dim_head=dim_head, window_size=window_size, proj_drop=proj_drop,
                                dtype=dtype)
        self.ls1 = Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.norm2 = LayerNorm(dim_out, eps=norm_eps, dtype=dtype)
        self.mlp = ConvMlp(dim_out, int(dim_out * expand_ratio), act_layer=act_layer, drop=proj_drop, dtype=dtype)
        self.ls2 = Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else Identity()

    def forward(self, x):
        x = self.drop_path1(self.ls1(self.attn(self.norm1(x)))) + self.shortcut(x)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
