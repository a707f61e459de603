"""1-D neighbourhood attention on the CPU: the 2-D kernels on a map of height 1.

A sequence ``(B, heads, n, d)`` is the map ``(B, heads, 1, n, d)``; the row axis gets kernel 1,
dilation 1, stride 1 and no causal mask, so its window is the query's own row and the 2-D
window rule reduces to the 1-D one on the columns. ``rpb (heads, 2k-1)`` becomes
``(heads, 1, 2k-1)``. See :mod:`refvit.kernels.cpu.na2d` for the paths.
"""
from refvit.kernels.cpu import na2d
from refvit.ops._neighborhood import Options


def as_map_options(options):
    """The 2-D options of a 1-D call: a singleton row axis in front."""
    return Options((1,) + options.kernel_size, (1,) + options.dilation, (1,) + options.stride,
                   (False,) + options.is_causal, options.scale)


def _as_map(a):
    return None if a is None else a[:, :, None]


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, n, d)``, ``rpb (heads, 2k-1)`` or None -> ``(out, attn)``."""
    out, attn = na2d.forward(_as_map(q), _as_map(k), _as_map(v), None if rpb is None else rpb[:, None],
                             as_map_options(options))
    return out[:, :, 0], attn[:, :, 0]


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    dq, dk, dv, drpb = na2d.backward(_as_map(dout), _as_map(q), _as_map(k), _as_map(v),
                                     None if rpb is None else rpb[:, None], _as_map(out), _as_map(attn),
                                     as_map_options(options))
    return dq[:, :, 0], dk[:, :, 0], dv[:, :, 0], None if drpb is None else drpb[:, 0]
