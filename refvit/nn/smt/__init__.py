"""SMT (Scale-Aware Modulation Transformer) modules, with the official ``state_dict`` names.

* :class:`ScaleAwareModulation`: multi-head mixed convolution + scale-aware aggregation
  modulating ``v`` (``ops.multiscale_dwconv``, ``ops.channel_shuffle``, BatchNorm inside).
* :class:`ConvSelfAttention`: global multi-head self-attention plus a depthwise 3x3 conv of ``v``.
* :class:`DWConvMlp` (with :class:`DWConv`): ``fc1``, ``GELU(h + dwconv(h))``, ``fc2``.
* :class:`SMTBlock`: pre-norm residual block holding one of the two attentions.
* :class:`ConvStem` (official ``Head``) and :class:`OverlapPatchEmbed`: the patch embeddings.

All take channels-last maps ``(B, H, W, C)``. The model is :mod:`refvit.models.smt`.
"""
from refvit.nn.smt.block import SMTBlock
from refvit.nn.smt.embed import ConvStem, OverlapPatchEmbed
from refvit.nn.smt.mlp import DWConv, DWConvMlp
from refvit.nn.smt.modulation import ScaleAwareModulation, regroup_heads, ungroup_heads
from refvit.nn.smt.self_attention import ConvSelfAttention

__all__ = [
    "ConvSelfAttention", "ConvStem", "DWConv", "DWConvMlp", "OverlapPatchEmbed", "SMTBlock",
    "ScaleAwareModulation", "regroup_heads", "ungroup_heads",
]
