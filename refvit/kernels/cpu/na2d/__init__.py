"""2-D neighbourhood attention on the CPU (``na1d`` runs here too, as a map of height 1).

Four paths, ``dense``, ``tiled``, ``wide`` and ``general``, one module each; :mod:`.dispatch` holds the rule
that picks one, its thresholds and figures, and the table of which shapes take which path. Read it
first. ``wide`` is a forward path only (:data:`.dispatch.BACKWARD_PATHS`).
"""
from refvit.kernels.cpu.na2d import dense, dispatch, general, tiled, wide

_FORWARD = {"dense": dense.forward, "tiled": tiled.forward, "wide": wide.forward, "general": general.forward}
_BACKWARD = {"dense": dense.backward, "tiled": tiled.backward, "general": general.backward}


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None, ``options``
    (:class:`refvit.ops._neighborhood.Options`) -> ``(out, attn)``, ``attn (B, heads, H, W, kh*kw)``."""
    height, width = q.shape[2:4]
    path = dispatch.choose_path(height, width, options, "forward")
    if path in dispatch.NEEDS_FINITE and not dispatch.all_finite(q, k, v, rpb):
        path = dispatch.choose_path(height, width, options, "forward", finite=False)
    dispatch.last_path["forward"] = path
    return _FORWARD[path](q, k, v, rpb, options)


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None; ``attn`` from any path."""
    height, width = q.shape[2:4]
    path = dispatch.choose_path(height, width, options, "backward")
    if path in dispatch.NEEDS_FINITE and not dispatch.all_finite(dout, q, k, v, rpb):
        path = dispatch.choose_path(height, width, options, "backward", finite=False)
    if path not in _BACKWARD:
        raise ValueError(f"na2d cpu: the {path!r} path has no backward; a backward takes one of "
                         f"{', '.join(dispatch.BACKWARD_PATHS)}")
    dispatch.last_path["backward"] = path
    return _BACKWARD[path](dout, q, k, v, rpb, out, attn, options)
