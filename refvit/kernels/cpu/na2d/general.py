"""The *general* path of ``na2d`` on the CPU: any stride, dilation, causal window, any map size.

Layout inside the kernels: ``q, k, v, out`` are ``(B*heads, H, W, d)``, C-contiguous; the softmax
weights ``attn`` and their gradient ``dlogits`` are ``(B*heads, H, W, kh*kw)``, slot ``u*kw + w``
for row slot ``u`` and column slot ``w``. Memory is O(H W kh kw), never O((H W)^2).

The window of an axis is given per query by :class:`SteppedBounds`: ``first`` (first key), ``count``
(number of keys, ``step`` = dilation apart) and ``bias`` (bias index of the first key), from
:func:`refvit.ops._neighborhood.axis_bounds`.

* forward: ``prange`` over (batch*head, query row); per query the logits, a softmax over the
  valid slots and the weighted sum of values. Writes only that query's ``out`` and ``attn``.
* backward, queries: the same loop writes ``dlogits`` and ``dq`` of each query (gather), and adds
  ``dlogits`` into per-(map, query row) bias tables, summed over batch and rows afterwards.
* backward, keys: ``prange`` over (batch*head, key row); each key gathers its ``dk`` and ``dv``
  from the queries whose window holds it, listed by the inverse tables of
  :func:`refvit.ops._neighborhood.inverse_windows` (:class:`refvit.ops._neighborhood.InverseWindows`, per
  axis; 2-D is their product). No key is written by two threads, so there are no races and no atomics.

Inner loops run over the head dimension with the array's own dtype, so float32 stays float32.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from refvit.ops._neighborhood import axis_bounds, axis_windows, inverse_windows


class SteppedBounds(NamedTuple):
    """The windows of one axis, per query position: ``first`` key, key ``count`` and ``bias`` index of
    the first key (the int64 arrays of :class:`refvit.ops._neighborhood.AxisBounds`), keys ``step``
    (the dilation) apart."""
    first: np.ndarray
    count: np.ndarray
    bias: np.ndarray
    step: int


@njit(cache=True)
def _dot(a, b):
    total = a[0] * b[0]
    for c in range(1, a.shape[0]):
        total += a[c] * b[c]
    return total


@njit(cache=True)
def _dots(query, rows, first, step, count, products):
    """``products[t] = query . rows[first + step*t]`` for ``t < count``.

    Four keys at a time: four independent sums keep the floating-point units busy while
    each sum still runs over the head dimension in order (no reassociation)."""
    t = 0
    while t + 4 <= count:
        k0 = rows[first + step * t]
        k1 = rows[first + step * (t + 1)]
        k2 = rows[first + step * (t + 2)]
        k3 = rows[first + step * (t + 3)]
        first_channel = query[0]
        s0, s1, s2, s3 = first_channel * k0[0], first_channel * k1[0], first_channel * k2[0], first_channel * k3[0]
        for c in range(1, query.shape[0]):
            channel = query[c]
            s0, s1, s2, s3 = s0 + channel * k0[c], s1 + channel * k1[c], s2 + channel * k2[c], s3 + channel * k3[c]
        products[t], products[t + 1], products[t + 2], products[t + 3] = s0, s1, s2, s3
        t += 4
    if count - t >= 2:
        k0 = rows[first + step * t]
        k1 = rows[first + step * (t + 1)]
        k2 = rows[first + step * (count - 1)]  # the third key, or the second again when two are left
        s0 = query[0] * k0[0]
        s1 = query[0] * k1[0]
        s2 = query[0] * k2[0]
        for c in range(1, query.shape[0]):
            s0 += query[c] * k0[c]
            s1 += query[c] * k1[c]
            s2 += query[c] * k2[c]
        products[t] = s0
        products[t + 1] = s1
        products[count - 1] = s2
    elif count - t == 1:
        products[t] = _dot(query, rows[first + step * t])


@njit(cache=True)
def _weighted_sum(weights, rows, first, step, count, result):
    """``result += sum_t weights[t] * rows[first + step*t]`` for ``t < count``, four rows per pass."""
    t = 0
    while t + 4 <= count:
        row = first + step * t
        w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
        for c in range(result.shape[0]):
            result[c] += (w0 * rows[row, c] + w1 * rows[row + step, c] + w2 * rows[row + 2 * step, c]
                          + w3 * rows[row + 3 * step, c])
        t += 4
    while t < count:
        _axpy(weights[t], rows[first + step * t], result)
        t += 1


@njit(cache=True)
def _axpy(alpha, x, y):
    """``y += alpha * x``."""
    for c in range(x.shape[0]):
        y[c] += alpha * x[c]


@njit(cache=True, parallel=True)
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
        logits = np.empty(slots, dtype=q.dtype)
        for y in range(width):
            query = q[m, x, y]
            for u in range(row_count[x]):
                row_logits = logits[u * kernel_w:(u + 1) * kernel_w]
                _dots(query, k[m, row_first[x] + row_step * u], col_first[y], col_step, col_count[y], row_logits)
                for w in range(col_count[y]):
                    row_logits[w] *= scale
                    if has_rpb:
                        row_logits[w] += rpb[head, row_bias[x] + u, col_bias[y] + w]
            largest = logits[0]
            for u in range(row_count[x]):
                for w in range(col_count[y]):
                    if logits[u * kernel_w + w] > largest:
                        largest = logits[u * kernel_w + w]
            weights = attn[m, x, y]
            weights[:] = 0.0
            total = weights[0]
            for u in range(row_count[x]):
                for w in range(col_count[y]):
                    slot = u * kernel_w + w
                    weights[slot] = math.exp(logits[slot] - largest)
                    total += weights[slot]
            inverse_total = 1.0 / total
            result = out[m, x, y]
            result[:] = 0.0
            for u in range(row_count[x]):
                row_weights = weights[u * kernel_w:(u + 1) * kernel_w]
                for w in range(col_count[y]):
                    row_weights[w] *= inverse_total
                _weighted_sum(row_weights, v[m, row_first[x] + row_step * u], col_first[y], col_step,
                              col_count[y], result)


@njit(cache=True, parallel=True)
def _backward_queries(dout, k, v, out, attn, scale, rows, cols, kernel_w, dlogits, dq, bias_partials):
    """``dlogits`` and ``dq`` of every query; ``bias_partials[m, x]`` sums the ``dlogits`` of query
    row ``x`` of map ``m`` by bias index (skipped when it has no rows)."""
    row_first, row_count, row_bias, row_step = rows
    col_first, col_count, col_bias, col_step = cols
    maps, height, width, head_dim = k.shape
    has_rpb = bias_partials.shape[0] > 0
    for task in prange(maps * height):
        m = task // height
        x = task % height
        scaled = np.empty(kernel_w, dtype=dq.dtype)
        for y in range(width):
            grad = dout[m, x, y]
            grad_dot_out = _dot(grad, out[m, x, y])
            result = dq[m, x, y]
            result[:] = 0.0
            for u in range(row_count[x]):
                key_row = row_first[x] + row_step * u
                _dots(grad, v[m, key_row], col_first[y], col_step, col_count[y], scaled)
                for w in range(col_count[y]):
                    slot = u * kernel_w + w
                    dlogit = attn[m, x, y, slot] * (scaled[w] - grad_dot_out)
                    dlogits[m, x, y, slot] = dlogit
                    scaled[w] = scale * dlogit
                    if has_rpb:
                        bias_partials[m, x, row_bias[x] + u, col_bias[y] + w] += dlogit
                _weighted_sum(scaled, k[m, key_row], col_first[y], col_step, col_count[y], result)


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
            grad_k = dk[m, key_row, key_col]
            grad_v = dv[m, key_row, key_col]
            grad_k[:] = 0.0
            grad_v[:] = 0.0
            for a in range(row_count[key_row]):
                x = row_queries[key_row, a]
                first_slot = row_slots[key_row, a] * kernel_w
                queries = col_queries[key_col]
                slots = col_slots[key_col]
                b = 0
                while b + 2 <= col_count[key_col]:
                    y0, y1 = queries[b], queries[b + 1]
                    d0 = dlogits[m, x, y0, first_slot + slots[b]]
                    d1 = dlogits[m, x, y1, first_slot + slots[b + 1]]
                    p0 = attn[m, x, y0, first_slot + slots[b]]
                    p1 = attn[m, x, y1, first_slot + slots[b + 1]]
                    q0, q1, g0, g1 = q[m, x, y0], q[m, x, y1], dout[m, x, y0], dout[m, x, y1]
                    for c in range(head_dim):
                        grad_k[c] += d0 * q0[c] + d1 * q1[c]
                        grad_v[c] += p0 * g0[c] + p1 * g1[c]
                    b += 2
                if b < col_count[key_col]:
                    y0 = queries[b]
                    _axpy(dlogits[m, x, y0, first_slot + slots[b]], q[m, x, y0], grad_k)
                    _axpy(attn[m, x, y0, first_slot + slots[b]], dout[m, x, y0], grad_v)
            for c in range(head_dim):
                grad_k[c] *= scale


def _axes(height, width, options):
    return [(n, options.kernel_size[a], options.dilation[a], options.stride[a], options.is_causal[a])
            for a, n in enumerate((height, width))]


def _windows(axis):
    bounds = axis_bounds(*axis)
    return SteppedBounds(bounds.first_key, bounds.key_count, bounds.first_bias, axis[2])


def _flat(a):
    batch, heads = a.shape[:2]
    return np.ascontiguousarray(a).reshape((batch * heads,) + a.shape[2:])


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
    dlogits = np.empty_like(attn)
    dq = np.empty_like(q)
    bias_shape = (0, 0, 0, 0) if rpb is None else (batch * heads, height) + tuple(rpb.shape[1:])
    bias_partials = np.zeros(bias_shape, np.float64)
    _backward_queries(dout, k, v, out, attn, scale, *(_windows(axis) for axis in axes), kernel_w, dlogits, dq,
                      bias_partials)
    dk = np.empty_like(k)
    dv = np.empty_like(v)
    inverse = (inverse_windows(axis_windows(*axis)) for axis in axes)
    _backward_keys(q, dout, attn, dlogits, scale, *inverse, kernel_w, dk, dv)
    drpb = None
    if rpb is not None:
        by_head = bias_partials.reshape((batch, heads, height) + tuple(rpb.shape[1:]))
        drpb = by_head.sum(axis=(0, 2)).astype(q.dtype)
    shape = (batch, heads, height, width, head_dim)
    return dq.reshape(shape), dk.reshape(shape), dv.reshape(shape), drpb
