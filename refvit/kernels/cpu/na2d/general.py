"""The *general* path of ``na2d`` on the CPU: any stride, dilation, causal window, any map size.

Layout inside the kernels: ``q, k, v, out`` are ``(B*heads, H, W, d)``, C-contiguous; the softmax
weights ``attn`` and their gradient ``dlogits`` are ``(B*heads, H, W, kh*kw)``, slot ``u*kw + w``
for row slot ``u`` and column slot ``w``. Memory is O(H W kh kw), never O((H W)^2).

The window of an axis is given per query by :class:`SteppedBounds`: ``first`` (first key), ``count``
(number of keys, ``step`` = dilation apart) and ``bias`` (bias index of the first key), from
:func:`refvit.ops._neighborhood.axis_bounds`.

* forward: ``prange`` over (batch*head, query row); per query the logits (three keys at a time, so
  three dot products run side by side), then the exponentials of the whole row in one pass of
  :func:`refvit.kernels.cpu.vector_math.exp_shifted` (``exp_shifted_for_float32`` for float32), then per
  query the weights and the weighted sum of values. Writes only that row's ``out`` and ``attn``.
* backward, queries: the same loop writes ``dlogits`` and ``dq`` of each query (gather), and adds
  ``dlogits`` into per-(map, query row) bias tables, summed over batch and rows afterwards.
* backward of at least :data:`BACKWARD_MAP_MIN_MAPS` maps: ``prange`` over maps, the query loop above also
  adding each (query, slot)'s terms onto its key's ``dk`` and ``dv`` (one writer: the map's thread).
* backward of fewer maps, keys: ``prange`` over (batch*head, key row); each key gathers its ``dk`` and ``dv``
  from the queries whose window holds it, listed by the inverse tables of
  :func:`refvit.ops._neighborhood.inverse_windows` (:class:`refvit.ops._neighborhood.InverseWindows`, per
  axis; 2-D is their product). No key is written by two threads, so there are no races and no atomics.

Inner loops run over the head dimension with the array's own dtype, so float32 stays float32 (the
exponentials of a float32 row are computed in float64 and rounded). The dot products over the head
dimension (:func:`_row_dots`, :func:`_dot_at`) may add their terms in any order (``fastmath`` flags
``reassoc`` and ``contract``), so that they run in vector lanes: in order, each was a chain of scalar
additions, and a 3x3 window's forward + backward took about 20% more (figures in ``docs/ops/na2d.md``).
The order is fixed by the compiled code, not by the threads, so the bits do not depend on them. The
kernels index the 4-D arrays directly rather than through row views: a view per key and query cost
15-30% of the work at 3x3 windows (figures in ``docs/ops/na2d.md``).
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from refvit.kernels.cpu.na2d.flat import flat
from refvit.kernels.cpu.vector_math import exp_shifted, exp_shifted_for_float32
from refvit.ops._neighborhood import axis_bounds, axis_windows, inverse_windows


# Backward calls of at least this many maps (B*heads) run one pass per map (:func:`_backward_map`): at 3x3
# windows on 28x28 and 56x56 maps 20% less work than the query pass and the key pass. Fewer maps take the
# two passes, whose tasks are rows, so that every thread has work. A fixed number, not the thread count,
# so that the same call gives the same bits with any number of threads.
BACKWARD_MAP_MIN_MAPS = 4


class SteppedBounds(NamedTuple):
    """The windows of one axis, per query position: ``first`` key, key ``count`` and ``bias`` index of
    the first key (the int64 arrays of :class:`refvit.ops._neighborhood.AxisBounds`), keys ``step``
    (the dilation) apart."""
    first: np.ndarray
    count: np.ndarray
    bias: np.ndarray
    step: int


@njit(cache=True, fastmath={"reassoc", "contract"})
def _row_dots(q, k, m, x, y, key_row, first, step, count, scale, logits):
    """``logits[w] = scale * q[m, x, y] . k[m, key_row, first + step*w]`` for ``w < count``, three keys
    at a time (three sums side by side over the head dimension, in vector lanes)."""
    head_dim = q.shape[3]
    w = 0
    while w + 3 <= count:
        c0, c1, c2 = first + step * w, first + step * (w + 1), first + step * (w + 2)
        s0 = s1 = s2 = q.dtype.type(0.0)
        for c in range(head_dim):
            a = q[m, x, y, c]
            s0 += a * k[m, key_row, c0, c]
            s1 += a * k[m, key_row, c1, c]
            s2 += a * k[m, key_row, c2, c]
        logits[w], logits[w + 1], logits[w + 2] = scale * s0, scale * s1, scale * s2
        w += 3
    while w < count:
        col = first + step * w
        s0 = q.dtype.type(0.0)
        for c in range(head_dim):
            s0 += q[m, x, y, c] * k[m, key_row, col, c]
        logits[w] = scale * s0
        w += 1


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot_at(a, b, m, x, y):
    """``a[m, x, y] . b[m, x, y]`` over the head dimension."""
    total = a.dtype.type(0.0)
    for c in range(a.shape[3]):
        total += a[m, x, y, c] * b[m, x, y, c]
    return total


@njit(cache=True, parallel=True, error_model="numpy")
def _forward(q, k, v, rpb, heads, scale, rows, cols, kernel_w, out, attn):
    """``rows, cols``: :class:`SteppedBounds`; ``rpb (heads, 2kh-1, 2kw-1)`` (0 rows: none)."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, head_dim = q.shape
    slots = attn.shape[3]
    has_rpb = rpb.shape[1] > 0
    for task in prange(maps * height):
        m = task // height
        x = task % height
        head = m % heads
        # the logits of the whole query row minus each query's largest, -inf in empty slots, so
        # that one pass of exp_shifted exponentiates them all
        shifted = np.empty(width * slots)
        powers = np.empty(width * slots)
        logits = np.empty(kernel_w, dtype=q.dtype)
        for y in range(width):
            row = shifted[y * slots:(y + 1) * slots]
            row[:] = -np.inf
            largest = -np.inf
            for u in range(row_count[x]):
                _row_dots(q, k, m, x, y, row_first[x] + row_step * u, col_first[y], col_step, col_count[y],
                          scale, logits)
                for w in range(col_count[y]):
                    logit = logits[w]
                    if has_rpb:
                        logit += rpb[head, row_bias[x] + u, col_bias[y] + w]
                    row[u * kernel_w + w] = logit
                    largest = max(largest, logit)
            for t in range(slots):
                row[t] -= largest
        if out.itemsize == 4:
            exp_shifted_for_float32(shifted, 0.0, powers)
        else:
            exp_shifted(shifted, 0.0, powers)
        for y in range(width):
            row = shifted[y * slots:(y + 1) * slots]
            total = 0.0
            for t in range(slots):
                total += row[t]
            for t in range(slots):
                attn[m, x, y, t] = row[t] / total
            out[m, x, y] = 0.0
            for u in range(row_count[x]):
                key_row = row_first[x] + row_step * u
                for w in range(col_count[y]):
                    p = attn[m, x, y, u * kernel_w + w]
                    col = col_first[y] + col_step * w
                    for c in range(head_dim):
                        out[m, x, y, c] += p * v[m, key_row, col, c]


@njit(cache=True, parallel=True)
def _backward_queries(dout, k, v, out, attn, scale, rows, cols, kernel_w, dlogits, dq, bias_partials):
    """``dlogits`` and ``dq`` of every query; ``bias_partials[m, x]`` sums the ``dlogits`` of query
    row ``x`` of map ``m`` by bias index (skipped when it has no rows)."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, head_dim = k.shape
    has_rpb = bias_partials.shape[0] > 0
    one = dq.dtype.type(1.0)
    for task in prange(maps * height):
        m = task // height
        x = task % height
        dprobs = np.empty(kernel_w, dtype=dq.dtype)
        for y in range(width):
            grad_dot_out = _dot_at(dout, out, m, x, y)
            dq[m, x, y] = 0.0
            for u in range(row_count[x]):
                key_row = row_first[x] + row_step * u
                _row_dots(dout, v, m, x, y, key_row, col_first[y], col_step, col_count[y], one, dprobs)
                for w in range(col_count[y]):
                    slot = u * kernel_w + w
                    dlogit = attn[m, x, y, slot] * (dprobs[w] - grad_dot_out)
                    dlogits[m, x, y, slot] = dlogit
                    if has_rpb:
                        bias_partials[m, x, row_bias[x] + u, col_bias[y] + w] += dlogit
                    scaled = scale * dlogit
                    col = col_first[y] + col_step * w
                    for c in range(head_dim):
                        dq[m, x, y, c] += scaled * k[m, key_row, col, c]


@njit(cache=True, parallel=True)
def _backward_map(dout, q, k, v, out, attn, scale, rows, cols, kernel_w, grads, bias_partials):
    """``grads = (dq, dk, dv)`` of one map per ``prange`` iteration: the query loop of
    :func:`_backward_queries`, each (query, slot) also adding onto its key's ``dk`` and ``dv`` (the thread
    that owns the map is their one writer); ``bias_partials`` as there."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, head_dim = k.shape
    has_rpb = bias_partials.shape[0] > 0
    dq, dk, dv = grads
    one = dq.dtype.type(1.0)
    for m in prange(maps):
        dk[m] = 0.0
        dv[m] = 0.0
        dprobs = np.empty(kernel_w, dtype=dq.dtype)
        for x in range(height):
            for y in range(width):
                grad_dot_out = _dot_at(dout, out, m, x, y)
                dq[m, x, y] = 0.0
                for u in range(row_count[x]):
                    key_row = row_first[x] + row_step * u
                    _row_dots(dout, v, m, x, y, key_row, col_first[y], col_step, col_count[y], one, dprobs)
                    for w in range(col_count[y]):
                        slot = u * kernel_w + w
                        dlogit = attn[m, x, y, slot] * (dprobs[w] - grad_dot_out)
                        if has_rpb:
                            bias_partials[m, x, row_bias[x] + u, col_bias[y] + w] += dlogit
                        scaled = scale * dlogit
                        col = col_first[y] + col_step * w
                        for c in range(head_dim):
                            dq[m, x, y, c] += scaled * k[m, key_row, col, c]
                        for c in range(head_dim):
                            dk[m, key_row, col, c] += scaled * q[m, x, y, c]
                        p = attn[m, x, y, slot]
                        for c in range(head_dim):
                            dv[m, key_row, col, c] += p * dout[m, x, y, c]


@njit(cache=True, parallel=True)
def _backward_keys(q, dout, attn, dlogits, scale, rows, cols, kernel_w, dk, dv):
    """``rows, cols``: :class:`refvit.ops._neighborhood.InverseWindows`."""
    row_queries, row_slots, row_count = rows
    col_queries, col_slots, col_count = cols
    maps, height, width, head_dim = q.shape
    for task in prange(maps * height):
        m = task // height
        key_row = task % height
        for key_col in range(width):
            dk[m, key_row, key_col] = 0.0
            dv[m, key_row, key_col] = 0.0
            for a in range(row_count[key_row]):
                x = row_queries[key_row, a]
                first_slot = row_slots[key_row, a] * kernel_w
                for b in range(col_count[key_col]):
                    y = col_queries[key_col, b]
                    slot = first_slot + col_slots[key_col, b]
                    d = dlogits[m, x, y, slot]
                    p = attn[m, x, y, slot]
                    for c in range(head_dim):
                        dk[m, key_row, key_col, c] += d * q[m, x, y, c]
                    for c in range(head_dim):
                        dv[m, key_row, key_col, c] += p * dout[m, x, y, c]
            for c in range(head_dim):
                dk[m, key_row, key_col, c] *= scale


def _axes(height, width, options):
    return [(n, options.kernel_size[a], options.dilation[a], options.stride[a], options.is_causal[a])
            for a, n in enumerate((height, width))]


def _windows(axis):
    bounds = axis_bounds(*axis)
    return SteppedBounds(bounds.first_key, bounds.key_count, bounds.first_bias, axis[2])


def _flat(a):
    return flat(a)


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> ``(out, attn)``,
    ``attn (B, heads, H, W, kh*kw)``."""
    batch, heads, height, width, head_dim = q.shape
    rows, cols = (_windows(axis) for axis in _axes(height, width, options))
    kernel_h, kernel_w = options.kernel_size
    bias = np.zeros((heads, 0, 0), q.dtype) if rpb is None else np.ascontiguousarray(rpb)
    out = np.empty((batch * heads, height, width, head_dim), q.dtype)
    attn = np.empty((batch * heads, height, width, kernel_h * kernel_w), q.dtype)
    _forward(_flat(q), _flat(k), _flat(v), bias, heads, q.dtype.type(options.scale), rows, cols, kernel_w, out, attn)
    return out.reshape(q.shape), attn.reshape((batch, heads, height, width, kernel_h * kernel_w))


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    batch, heads, height, width, head_dim = q.shape
    axes = _axes(height, width, options)
    kernel_w = options.kernel_size[1]
    scale = q.dtype.type(options.scale)
    q, k, v, dout, out, attn = (_flat(a) for a in (q, k, v, dout, out, attn))
    dq, dk, dv = (np.empty_like(a) for a in (q, k, v))
    bias_shape = (0, 0, 0, 0) if rpb is None else (batch * heads, height) + tuple(rpb.shape[1:])
    bias_partials = np.zeros(bias_shape, np.float64)
    windows = tuple(_windows(axis) for axis in axes)
    if q.shape[0] >= BACKWARD_MAP_MIN_MAPS:  # one pass, keys added by the thread that owns the map
        _backward_map(dout, q, k, v, out, attn, scale, *windows, kernel_w, (dq, dk, dv), bias_partials)
    else:  # query rows and key rows as tasks, so that few maps still keep every thread busy
        dlogits = np.empty_like(attn)
        _backward_queries(dout, k, v, out, attn, scale, *windows, kernel_w, dlogits, dq, bias_partials)
        inverse = (inverse_windows(axis_windows(*axis)) for axis in axes)
        _backward_keys(q, dout, attn, dlogits, scale, *inverse, kernel_w, dk, dv)
    drpb = None
    if rpb is not None:
        by_head = bias_partials.reshape((batch, heads, height) + tuple(rpb.shape[1:]))
        drpb = by_head.sum(axis=(0, 2)).astype(q.dtype)
    shape = (batch, heads, height, width, head_dim)
    return dq.reshape(shape), dk.reshape(shape), dv.reshape(shape), drpb
