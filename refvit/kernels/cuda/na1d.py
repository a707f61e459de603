"""1-D neighbourhood attention on the GPU: the 2-D kernels on a map of height 1.

A sequence ``(B, heads, n, d)`` is reshaped (no copy) to the map ``(B, heads, 1, n, d)`` and
``rpb (heads, 2k-1)`` to ``(heads, 1, 2k-1)``; the row axis gets kernel 1, so every query's
row window is its own row. See :mod:`refvit.kernels.cuda.na2d` for the kernels.
"""
from refvit.kernels.cpu.na1d import as_map_options
from refvit.kernels.cuda import na2d


def _as_map(a):
    return None if a is None else a.reshape((a.shape[0], a.shape[1], 1) + tuple(a.shape[2:]))


def _as_sequence(a):
    return None if a is None else a.reshape((a.shape[0], a.shape[1]) + tuple(a.shape[3:]))


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, n, d)``, ``rpb (heads, 2k-1)`` or None -> ``(out, attn (B, heads, n, k))``."""
    out, attn = na2d.forward(_as_map(q), _as_map(k), _as_map(v), _as_bias_map(rpb), as_map_options(options))
    return _as_sequence(out), _as_sequence(attn)


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    dq, dk, dv, drpb = na2d.backward(_as_map(dout), _as_map(q), _as_map(k), _as_map(v), _as_bias_map(rpb),
                                     _as_map(out), _as_map(attn), as_map_options(options))
    return _as_sequence(dq), _as_sequence(dk), _as_sequence(dv), None if drpb is None else drpb.reshape(
        (drpb.shape[0], drpb.shape[2]))


def _as_bias_map(rpb):
    return None if rpb is None else rpb.reshape((rpb.shape[0], 1, rpb.shape[1]))
