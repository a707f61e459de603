"""CSWin Transformer modules: stripe-attention branches with LePE, the block, stem and merge block.

Names and ``state_dict`` keys follow microsoft/CSWin-Transformer ``models/cswin.py``; the
models are in :mod:`refvit.models.cswin`. See ``docs/models/cswin.md``.
"""
from refvit.nn.cswin.attention import LePEAttention
from refvit.nn.cswin.block import CSWinBlock
from refvit.nn.cswin.embed import MergeBlock, conv_embed

__all__ = ["CSWinBlock", "LePEAttention", "MergeBlock", "conv_embed"]
