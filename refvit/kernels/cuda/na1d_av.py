"""``na1d_av`` on the GPU: ``na2d_av``'s kernels (:mod:`refvit.kernels.cuda.na_split`) on a map of height 1.

``attn (B, heads, n, k)`` and ``v (B, heads, n, d)`` are reshaped (no copy) to ``(B, heads, 1, n, ...)``;
the row axis gets a window of one (:func:`refvit.kernels.cpu.na1d.as_map_options`).
"""
from refvit.kernels.cpu.na1d import as_map_options
from refvit.kernels.cuda import na_split
from refvit.kernels.cuda.na1d_qk import _as_map, _as_sequence


def forward(attn, v, options):
    """``attn (B, heads, n, k)``, ``v (B, heads, n, d)`` -> ``out (B, heads, n, d)``."""
    return _as_sequence(na_split.av_forward(_as_map(attn), _as_map(v), as_map_options(options)))


def backward(dout, attn, v, options):
    """-> ``(dattn, dv)``."""
    dattn, dv = na_split.av_backward(_as_map(dout), _as_map(attn), _as_map(v), as_map_options(options))
    return _as_sequence(dattn), _as_sequence(dv)
