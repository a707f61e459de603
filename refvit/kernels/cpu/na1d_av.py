"""``na1d_av`` on the CPU: ``na2d_av``'s kernels (:mod:`refvit.kernels.cpu.na_split`) on a map of height 1.

``attn (B, heads, n, k)`` and ``v (B, heads, n, d)`` are the maps ``(B, heads, 1, n, ...)`` with a
row window of one (see :func:`refvit.kernels.cpu.na1d.as_map_options`).
"""
from refvit.kernels.cpu import na_split
from refvit.kernels.cpu.na1d import as_map_options


def forward(attn, v, options):
    """``attn (B, heads, n, k)``, ``v (B, heads, n, d)`` -> ``out (B, heads, n, d)``."""
    return na_split.av_forward(attn[:, :, None], v[:, :, None], as_map_options(options))[:, :, 0]


def backward(dout, attn, v, options):
    """-> ``(dattn, dv)``."""
    dattn, dv = na_split.av_backward(dout[:, :, None], attn[:, :, None], v[:, :, None], as_map_options(options))
    return dattn[:, :, 0], dv[:, :, 0]
