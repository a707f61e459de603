"""The split neighbourhood-attention ops on the CPU: ``na2d_qk`` and ``na2d_av`` (and, as maps of
height 1, ``na1d_qk`` and ``na1d_av``).

Layout inside the kernels: ``q, k, v, out`` are ``(B*heads, H, W, d)``, C-contiguous; logits,
weights and their gradients are ``(B*heads, H, W, kh*kw)``, slot ``u*kw + w``. Each axis' windows
come as a :class:`refvit.kernels.cpu.na2d.general.SteppedBounds` (first key, key count, bias index
of the first key, keys ``step`` = dilation apart), and, for the gathers over keys, as the
:class:`refvit.ops._neighborhood.InverseWindows` of the axis.

The four passes of the two ops are three loops:

* :func:`_window_dots`: per query and slot, ``scale * a[query] . b[key] (+ rpb)``; ``fill`` on a slot
  with no key. It is ``na2d_qk``'s forward (``a = q, b = k``) and ``na2d_av``'s ``dattn``
  (``a = dout, b = v``, no bias, fill 0).
* :func:`_window_sums`: per query, ``scale * sum_slot weights[slot] * b[key]``: ``na2d_av``'s forward
  (``attn``, ``v``) and ``na2d_qk``'s ``dq`` (``dlogits``, ``k``).
* :func:`_gather_to_keys`: per key, ``scale * sum over the (query, slot) holding it of
  weights * a[query]``: ``na2d_qk``'s ``dk`` (``dlogits``, ``q``) and ``na2d_av``'s ``dv``
  (``attn``, ``dout``).

and ``drpb`` (:func:`_bias_gradient`) sums ``dlogits`` per bias entry. Every loop is a ``prange``
over the rows of the array it writes (gather, not scatter): no races, and one thread or many give
the same bits.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.na2d.general import _axes, _flat, _windows
from refvit.ops._neighborhood import axis_windows, inverse_windows


@njit(cache=True, parallel=True)
def _window_dots(a, b, rpb, heads, scale, rows, cols, kernel_w, fill, result):
    """``result[m, x, y, u*kw + w] = scale * a[m, x, y] . b[m, key] + rpb[head, bias]``, ``fill`` on empty
    slots; ``rpb (heads, 2kh-1, 2kw-1)`` (0 rows: none)."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, head_dim = a.shape
    has_rpb = rpb.shape[1] > 0
    for task in prange(maps * height):
        m = task // height
        x = task % height
        head = m % heads
        for y in range(width):
            logits = result[m, x, y]
            logits[:] = fill
            query = a[m, x, y]
            for u in range(row_count[x]):
                key_row = b[m, row_first[x] + row_step * u]
                for w in range(col_count[y]):
                    key = key_row[col_first[y] + col_step * w]
                    total = query[0] * key[0]
                    for c in range(1, head_dim):
                        total += query[c] * key[c]
                    total *= scale
                    if has_rpb:
                        total += rpb[head, row_bias[x] + u, col_bias[y] + w]
                    logits[u * kernel_w + w] = total


@njit(cache=True, parallel=True)
def _window_sums(weights, b, scale, rows, cols, kernel_w, result):
    """``result[m, x, y] = scale * sum_(u,w) weights[m, x, y, u*kw + w] * b[m, key(u, w)]`` over the
    window's slots that hold a key."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, head_dim = b.shape
    for task in prange(maps * height):
        m = task // height
        x = task % height
        for y in range(width):
            total = result[m, x, y]
            total[:] = 0.0
            for u in range(row_count[x]):
                key_row = b[m, row_first[x] + row_step * u]
                for w in range(col_count[y]):
                    weight = weights[m, x, y, u * kernel_w + w]
                    key = key_row[col_first[y] + col_step * w]
                    for c in range(head_dim):
                        total[c] += weight * key[c]
            for c in range(head_dim):
                total[c] *= scale


@njit(cache=True, parallel=True)
def _gather_to_keys(weights, a, scale, rows, cols, kernel_w, result):
    """``result[m, j] = scale * sum_((x, y), slot) -> j weights[m, x, y, slot] * a[m, x, y]``; ``rows, cols``:
    :class:`refvit.ops._neighborhood.InverseWindows`."""
    row_queries, row_slots, row_count = rows
    col_queries, col_slots, col_count = cols
    maps, height, width, head_dim = a.shape
    for task in prange(maps * height):
        m = task // height
        key_row = task % height
        for key_col in range(width):
            total = result[m, key_row, key_col]
            total[:] = 0.0
            for i in range(row_count[key_row]):
                x = row_queries[key_row, i]
                first_slot = row_slots[key_row, i] * kernel_w
                for j in range(col_count[key_col]):
                    y = col_queries[key_col, j]
                    weight = weights[m, x, y, first_slot + col_slots[key_col, j]]
                    query = a[m, x, y]
                    for c in range(head_dim):
                        total[c] += weight * query[c]
            for c in range(head_dim):
                total[c] *= scale


@njit(cache=True, parallel=True)
def _bias_gradient(dlogits, heads, rows, cols, kernel_w, drpb):
    """``drpb[head, r, c]``: the sum of ``dlogits`` over the maps of ``head`` and every query whose slot
    ``(r - bias_row, c - bias_col)`` holds a key."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, slots = dlogits.shape
    bias_rows, bias_cols = drpb.shape[1], drpb.shape[2]
    for task in prange(heads * bias_rows):
        head = task // bias_rows
        r = task % bias_rows
        for c in range(bias_cols):
            total = 0.0
            for x in range(height):
                u = r - row_bias[x]
                if u < 0 or u >= row_count[x]:
                    continue
                for y in range(width):
                    w = c - col_bias[y]
                    if w < 0 or w >= col_count[y]:
                        continue
                    for m in range(head, maps, heads):
                        total += dlogits[m, x, y, u * kernel_w + w]
            drpb[head, r, c] = total


def _bounds(height, width, options):
    """The two axes' window tables (:class:`~refvit.kernels.cpu.na2d.general.SteppedBounds`), as na2d's
    general path builds them."""
    return [_windows(axis) for axis in _axes(height, width, options)]


def _inverse(height, width, options):
    """The two axes' :class:`refvit.ops._neighborhood.InverseWindows`."""
    return [inverse_windows(axis_windows(*axis)) for axis in _axes(height, width, options)]


def qk_forward(q, k, rpb, options):
    """``q, k (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> logits ``(B, heads, H, W, kh*kw)``."""
    batch, heads, height, width, _ = q.shape
    kernel_h, kernel_w = options.kernel_size
    bias = np.zeros((heads, 0, 0), q.dtype) if rpb is None else np.ascontiguousarray(rpb)
    logits = np.empty((batch * heads, height, width, kernel_h * kernel_w), q.dtype)
    _window_dots(_flat(q), _flat(k), bias, heads, q.dtype.type(options.scale), *_bounds(height, width, options),
                 kernel_w, q.dtype.type(-np.inf), logits)
    return logits.reshape((batch, heads, height, width, kernel_h * kernel_w))


def qk_backward(dout, q, k, rpb, options):
    """-> ``(dq, dk, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    batch, heads, height, width, _ = q.shape
    kernel_w = options.kernel_size[1]
    scale = q.dtype.type(options.scale)
    dlogits, q, k = _flat(dout), _flat(q), _flat(k)
    bounds = _bounds(height, width, options)
    dq = np.empty_like(q)
    _window_sums(dlogits, k, scale, *bounds, kernel_w, dq)
    dk = np.empty_like(k)
    _gather_to_keys(dlogits, q, scale, *_inverse(height, width, options), kernel_w, dk)
    drpb = None
    if rpb is not None:
        drpb = np.empty(rpb.shape, q.dtype)
        _bias_gradient(dlogits, heads, *bounds, kernel_w, drpb)
    shape = (batch, heads, height, width, q.shape[-1])
    return dq.reshape(shape), dk.reshape(shape), drpb


def av_forward(attn, v, options):
    """``attn (B, heads, H, W, kh*kw)``, ``v (B, heads, H, W, d)`` -> ``out (B, heads, H, W, d)``."""
    height, width = v.shape[2:4]
    out = np.empty((v.shape[0] * v.shape[1],) + v.shape[2:], v.dtype)
    _window_sums(_flat(attn), _flat(v), v.dtype.type(1.0), *_bounds(height, width, options),
                 options.kernel_size[1], out)
    return out.reshape(v.shape)


def av_backward(dout, attn, v, options):
    """-> ``(dattn, dv)``."""
    heads, height, width = v.shape[1:4]
    kernel_w = options.kernel_size[1]
    one = v.dtype.type(1.0)
    dout, weights, values = _flat(dout), _flat(attn), _flat(v)
    dattn = np.empty(weights.shape, v.dtype)
    _window_dots(dout, values, np.zeros((heads, 0, 0), v.dtype), heads, one, *_bounds(height, width, options),
                 kernel_w, v.dtype.type(0.0), dattn)
    dv = np.empty_like(values)
    _gather_to_keys(weights, dout, one, *_inverse(height, width, options), kernel_w, dv)
    return dattn.reshape(attn.shape), dv.reshape(v.shape)
