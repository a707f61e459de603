"""``na1d_qk`` on the CPU: ``na2d_qk``'s kernels (:mod:`refvit.kernels.cpu.na_split`) on a map of height 1.

A sequence ``(B, heads, n, d)`` is the map ``(B, heads, 1, n, d)`` with a row window of one
(see :func:`refvit.kernels.cpu.na1d.as_map_options`); ``rpb (heads, 2k-1)`` is ``(heads, 1, 2k-1)``
and the logits ``(B, heads, n, k)`` are ``(B, heads, 1, n, k)``.
"""
from refvit.kernels.cpu import na_split
from refvit.kernels.cpu.na1d import as_map_options


def forward(q, k, rpb, options):
    """``q, k (B, heads, n, d)``, ``rpb (heads, 2k-1)`` or None -> logits ``(B, heads, n, k)``."""
    logits = na_split.qk_forward(q[:, :, None], k[:, :, None], None if rpb is None else rpb[:, None],
                                 as_map_options(options))
    return logits[:, :, 0]


def backward(dout, q, k, rpb, options):
    """-> ``(dq, dk, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    dq, dk, drpb = na_split.qk_backward(dout[:, :, None], q[:, :, None], k[:, :, None],
                                        None if rpb is None else rpb[:, None], as_map_options(options))
    return dq[:, :, 0], dk[:, :, 0], None if drpb is None else drpb[:, 0]
