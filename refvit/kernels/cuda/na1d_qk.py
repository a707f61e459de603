"""``na1d_qk`` on the GPU: ``na2d_qk``'s kernels (:mod:`refvit.kernels.cuda.na_split`) on a map of height 1.

``q, k (B, heads, n, d)`` are reshaped (no copy) to ``(B, heads, 1, n, d)``, ``rpb (heads, 2k-1)`` to
``(heads, 1, 2k-1)``; the row axis gets a window of one (:func:`refvit.kernels.cpu.na1d.as_map_options`).
"""
from refvit.kernels.cpu.na1d import as_map_options
from refvit.kernels.cuda import na_split


def _as_map(a):
    return None if a is None else a.reshape((a.shape[0], a.shape[1], 1) + tuple(a.shape[2:]))


def _as_sequence(a):
    return None if a is None else a.reshape((a.shape[0], a.shape[1]) + tuple(a.shape[3:]))


def forward(q, k, rpb, options):
    """``q, k (B, heads, n, d)``, ``rpb (heads, 2k-1)`` or None -> logits ``(B, heads, n, k)``."""
    bias = None if rpb is None else rpb.reshape((rpb.shape[0], 1, rpb.shape[1]))
    return _as_sequence(na_split.qk_forward(_as_map(q), _as_map(k), bias, as_map_options(options)))


def backward(dout, q, k, rpb, options):
    """-> ``(dq, dk, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    bias = None if rpb is None else rpb.reshape((rpb.shape[0], 1, rpb.shape[1]))
    dq, dk, drpb = na_split.qk_backward(_as_map(dout), _as_map(q), _as_map(k), bias, as_map_options(options))
    return _as_sequence(dq), _as_sequence(dk), None if drpb is None else drpb.reshape((drpb.shape[0], drpb.shape[2]))
