r"""``CSWinBlock``: cross-shaped window self-attention, then an MLP, both pre-norm and residual.

On ``x (B, H, W, C)``:

.. math::
    [q \,|\, k \,|\, v] &= \mathrm{LN}_1(x)\, W_{qkv}^\top + b_{qkv}  \qquad (C \to 3C) \\
    a &= \big[\, \mathrm{attn}_0(q_{:C/2}, k_{:C/2}, v_{:C/2}) \;\big|\;
                 \mathrm{attn}_1(q_{C/2:}, k_{C/2:}, v_{C/2:}) \,\big] \\
    x &\leftarrow x + \mathrm{DropPath}(a\, W_{proj}^\top + b_{proj}) \\
    x &\leftarrow x + \mathrm{DropPath}(\mathrm{fc}_2(\mathrm{GELU}(\mathrm{fc}_1(\mathrm{LN}_2(x)))))

``attns.0`` attends in vertical stripes ``(H, split_size)`` with ``heads/2`` heads on the first
half of the channels, ``attns.1`` in horizontal stripes ``(split_size, W)`` on the second half:
together each token sees a cross of width ``split_size`` through itself. A block of the last
stage, or one whose resolution equals ``split_size`` (the official rule), has one branch,
``attns.0``, with all heads and channels on the full map. No layer scale.

Children in the official order (so ``state_dict`` keys and their order match):
``qkv``, ``norm1``, ``proj``, ``attns``, ``mlp`` (``fc1``, ``fc2``), ``norm2``.
"""
from __future__ import annotations

from refvit import functional as F
from refvit._validate import check_int
from refvit.nn.activation import GELU
from refvit.nn.container import ModuleList
from refvit.nn.cswin.attention import LePEAttention
from refvit.nn.dropout import DropPath
from refvit.nn.linear import Identity, Linear
from refvit.nn.mlp import Mlp
from refvit.nn.module import Module
from refvit.nn.norm import LayerNorm


class CSWinBlock(Module):
    """``x (B, H, W, dim)`` -> ``(B, H, W, dim)``; see the module docstring.

    ``last_stage=True`` (or ``reso == split_size``) gives the single full-map branch.
    ``pad_to_stripes`` zero-pads maps the stripes do not divide (segmentation behaviour).
    ``qkv_bias`` defaults to ``False`` as the official block; the CSWin models pass ``True``.
    """

    def __init__(self, dim, num_heads, *, split_size=7, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0,
                 drop_path=0.0, last_stage=False, reso=None, pad_to_stripes=False, act_layer=GELU, dtype=None):
        super().__init__()
        dim = check_int("CSWinBlock", "dim", dim, minimum=1)
        num_heads = check_int("CSWinBlock", "num_heads", num_heads)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"CSWinBlock: 'num_heads' must be positive and divide dim ({dim}); got {num_heads}")
        self.dim, self.num_heads, self.split_size = int(dim), int(num_heads), int(split_size)
        self.branch_num = 1 if (last_stage or reso == split_size) else 2
        if self.branch_num == 2 and num_heads % 2:
            raise ValueError(f"CSWinBlock: 'num_heads' must be even for the two stripe branches; got {num_heads}")
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias, dtype=dtype)
        self.norm1 = LayerNorm(dim, dtype=dtype)
        self.proj = Linear(dim, dim, dtype=dtype)
        if self.branch_num == 1:
            branches = [LePEAttention(dim, num_heads, "full", split_size, qk_scale, pad_to_stripes, dtype)]
        else:
            branches = [LePEAttention(dim // 2, num_heads // 2, orientation, split_size, qk_scale, pad_to_stripes,
                                      dtype) for orientation in ("vertical", "horizontal")]
        self.attns = ModuleList(branches)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, act_layer=act_layer, drop=drop, dtype=dtype)
        self.norm2 = LayerNorm(dim, dtype=dtype)

    def forward(self, x):
        channels = x.shape[-1]
        if len(x.shape) != 4 or channels != self.dim:
            raise ValueError(f"CSWinBlock: 'x' must be a (B, H, W, {self.dim}) map; got shape {tuple(x.shape)}")
        qkv = self.qkv(self.norm1(x))  # channels [q | k | v]
        if self.branch_num == 2:
            half = channels // 2
            q0, q1, k0, k1, v0, v1 = F.split(qkv, [half] * 6, axis=-1)
            attended = F.cat([self.attns[0](q0, k0, v0), self.attns[1](q1, k1, v1)], axis=-1)
        else:
            q, k, v = F.split(qkv, [channels] * 3, axis=-1)
            attended = self.attns[0](q, k, v)
        x = x + self.drop_path(self.proj(attended))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self):
        return f"dim={self.dim}, num_heads={self.num_heads}, split_size={self.split_size}, branches={self.branch_num}"
