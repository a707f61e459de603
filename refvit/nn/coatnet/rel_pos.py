r"""``RelPosBias``: a learned bias per head for every relative offset of a ``(Wh, Ww)`` map.

``relative_position_bias_table ((2Wh-1)(2Ww-1), heads)`` holds one row per offset
``(dh, dw)``, ``dh in [-(Wh-1), Wh-1]``, ``dw in [-(Ww-1), Ww-1]``, at row
``(dh + Wh - 1)(2Ww - 1) + (dw + Ww - 1)``. :meth:`RelPosBias.get_bias` gathers it into
``bias (heads, N, N)`` with ``bias[h, a, b] = table[idx(a, b), h]`` (``N = Wh Ww``, tokens
row-major, ``(dh, dw)`` = query ``a``'s coordinate minus key ``b``'s) through
``ops.relative_position_bias``, whose backward scatter-adds into the table.

``relative_position_index (N*N,)`` is registered as a non-persistent buffer, as in timm: it is
derived from the window, so it stays out of ``state_dict``.
"""
from __future__ import annotations

import numpy as np

from refvit import functional as F
from refvit.nn import init
from refvit.nn.module import Module
from refvit.nn.parameter import Parameter, resolve_dtype
from refvit.ops.relative_position_bias import relative_position_index, table_rows


class RelPosBias(Module):
    """Relative position bias over a ``window_size = (Wh, Ww)`` map for ``num_heads`` heads."""

    def __init__(self, window_size, num_heads, dtype=None):
        super().__init__()
        window_size = (window_size, window_size) if isinstance(window_size, int) else tuple(window_size)
        self.window_size, self.num_heads = window_size, int(num_heads)
        self.relative_position_bias_table = Parameter(np.zeros((table_rows(window_size), self.num_heads),
                                                               resolve_dtype(dtype)))
        self.register_buffer("relative_position_index", relative_position_index(window_size).reshape(-1),
                             persistent=False)
        self.init_weights()

    def init_weights(self):
        init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def get_bias(self):
        """``bias (heads, N, N)``, recorded on the tape (its gradient reaches the table)."""
        return F.relative_position_bias(self.relative_position_bias_table, self.window_size)

    def forward(self, attn):
        """``attn (..., heads, N, N) + bias`` (timm's ``RelPosBias.forward`` on logits)."""
        return attn + self.get_bias()

    def extra_repr(self):
        return f"window_size={self.window_size}, num_heads={self.num_heads}"
