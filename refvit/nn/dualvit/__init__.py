"""DualViT (Dual Vision Transformer) modules, with the official ``state_dict`` names.

* :class:`DualBlock` (with :class:`DualAttention`): pixel path and semantic path joined by
  two cross-attentions (semantic-to-pixel and pixel-to-semantic), stages 1-2.
* :class:`MergeBlock` (with :class:`Attention`, :class:`MergeFFN`): self-attention over
  ``[pixels; semantic tokens]`` and separate FFNs, stages 3-4.
* :class:`SemanticTokenInit` (:func:`initial_semantic_tokens`) and :class:`SemanticEmbed`:
  the semantic tokens' start and their embedding between stages.
* :class:`Stem`, :class:`DownSamples`: the patch embeddings (channels-last maps).
* :class:`ClassBlock` (:class:`ClassAttention`, :class:`FFN`) and :func:`token_label_logits`: the head.

Token sequences are ``(B, N, C)``; the model is :mod:`refvit.models.dualvit`.
"""
from refvit.nn.dualvit.block import Attention, DualBlock, MergeBlock
from refvit.nn.dualvit.dual_attention import DualAttention
from refvit.nn.dualvit.embed import DownSamples, Stem
from refvit.nn.dualvit.ffn import FFN, DWConv, MergeFFN, PVT2FFN
from refvit.nn.dualvit.head import ClassAttention, ClassBlock, token_label_logits
from refvit.nn.dualvit.semantic import (
    SemanticEmbed, SemanticTokenInit, bicubic_matrix, initial_semantic_tokens, semantic_init_parts,
)
from refvit.nn.dualvit.tokens import merge_heads, multi_head_attention, split_heads

__all__ = [
    "Attention", "ClassAttention", "ClassBlock", "DWConv", "DownSamples", "DualAttention", "DualBlock", "FFN",
    "MergeBlock", "MergeFFN", "PVT2FFN", "SemanticEmbed", "SemanticTokenInit", "Stem", "bicubic_matrix",
    "initial_semantic_tokens", "merge_heads", "multi_head_attention", "semantic_init_parts", "split_heads",
    "token_label_logits",
]
