"""2-D neighbourhood attention on the GPU (``na1d`` runs here too, as a map of height 1).

Layout as in :mod:`refvit.kernels.cpu.na2d`: ``q, k, v, out (B*heads, H, W, d)``, softmax weights
and their gradient ``(B*heads, H, W, kh*kw)``. Each axis' windows come as an ``AxisBounds`` of
device arrays (``rows``, ``cols``; :mod:`refvit.ops._neighborhood`): per query the first key, the
key count (keys ``steps`` = ``dilation`` apart) and the bias index of the first key; the backward
pass over keys reads the per-axis ``InverseWindows`` the same way.

* forward: one thread per query; logits, softmax and the weighted sum of values. The logits are
  written into the weights array, then overwritten by the weights: one thread owns one row.
* backward, queries: one thread per query writes its ``dlogits`` row and ``dq``.
* backward, keys: one thread per key gathers ``dk`` and ``dv`` from the queries whose window
  holds it (the per-axis inverse tables); every output element has exactly one writer, so no
  atomics and no races, however many queries share a key (strides make whole blocks share).
* backward, bias: one thread per bias entry ``(head, r, c)`` walks the queries of that head; a
  query contributes the slot ``(r - bias_h, c - bias_w)`` when that slot is in its window.
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.ops._neighborhood import axis_bounds, axis_windows, inverse_windows


@cuda.jit(device=True)
def _query(index, a):
    """Flat thread index -> ``(map, row, column)`` of an element of ``a (maps, H, W, d)``."""
    height, width = a.shape[1], a.shape[2]
    return index // (height * width), (index // width) % height, index % width


@cuda.jit(device=True)
def _dot(a, m, x, y, b, key_row, key_col):
    """``a[m, x, y, :] . b[m, key_row, key_col, :]`` in float64."""
    total = 0.0
    for c in range(a.shape[3]):
        total += a[m, x, y, c] * b[m, key_row, key_col, c]
    return total


@cuda.jit(device=True)
def _window_sum(weights, values, m, x, y, c, rows, cols, steps, kernel_w):
    """``sum_slot weights[m, x, y, slot] * values[m, key(slot), c]`` over the window of query ``(x, y)``."""
    acc = 0.0
    for u in range(rows.key_count[x]):
        key_row = rows.first_key[x] + steps[0] * u
        for w in range(cols.key_count[y]):
            acc += weights[m, x, y, u * kernel_w + w] * values[m, key_row, cols.first_key[y] + steps[1] * w, c]
    return acc


@cuda.jit
def _forward_kernel(q, k, v, rpb, heads, scale, rows, cols, steps, kernel_w, out, attn):
    m, x, y = _query(cuda.grid(1), q)
    if m >= q.shape[0]:
        return
    head = m % heads
    largest = -math.inf
    for u in range(rows.key_count[x]):
        key_row = rows.first_key[x] + steps[0] * u
        for w in range(cols.key_count[y]):
            logit = _dot(q, m, x, y, k, key_row, cols.first_key[y] + steps[1] * w) * scale
            if rpb.shape[1] > 0:
                logit += rpb[head, rows.first_bias[x] + u, cols.first_bias[y] + w]
            attn[m, x, y, u * kernel_w + w] = logit
            if logit > largest or u + w == 0:
                largest = logit
    total = 0.0
    for slot in range(attn.shape[3]):
        if slot // kernel_w < rows.key_count[x] and slot % kernel_w < cols.key_count[y]:
            weight = math.exp(attn[m, x, y, slot] - largest)
            attn[m, x, y, slot] = weight
            total += weight
        else:
            attn[m, x, y, slot] = 0.0
    for slot in range(attn.shape[3]):
        attn[m, x, y, slot] /= total
    for c in range(out.shape[3]):
        out[m, x, y, c] = _window_sum(attn, v, m, x, y, c, rows, cols, steps, kernel_w)


def _launch_forward(q, k, v, rpb, heads, scale, rows, cols, steps, kernel_w, out, attn):
    _forward_kernel[grid_1d(out.size // out.shape[3])](q, k, v, rpb, heads, scale, rows, cols, steps, kernel_w,
                                                        out, attn)


@cuda.jit
def _backward_queries_kernel(dout, k, v, out, attn, scale, rows, cols, steps, kernel_w, dlogits, dq):
    index = cuda.grid(1)
    if index >= dq.size // dq.shape[3]:
        return
    m, x, y = _query(index, dq)
    grad_dot_out = _dot(dout, m, x, y, out, x, y)
    for slot in range(dlogits.shape[3]):
        dlogits[m, x, y, slot] = 0.0
    for u in range(rows.key_count[x]):
        for w in range(cols.key_count[y]):
            grad_dot_v = _dot(dout, m, x, y, v, rows.first_key[x] + steps[0] * u, cols.first_key[y] + steps[1] * w)
            slot = u * kernel_w + w
            dlogits[m, x, y, slot] = attn[m, x, y, slot] * (grad_dot_v - grad_dot_out)
    for c in range(dq.shape[3]):
        dq[m, x, y, c] = scale * _window_sum(dlogits, k, m, x, y, c, rows, cols, steps, kernel_w)


def _launch_backward_queries(dout, k, v, out, attn, scale, rows, cols, steps, kernel_w, dlogits, dq):
    _backward_queries_kernel[grid_1d(dq.size // dq.shape[3])](dout, k, v, out, attn, scale, rows, cols, steps,
                                                              kernel_w, dlogits, dq)


@cuda.jit
def _backward_keys_kernel(q, dout, attn, dlogits, scale, row_inverse, col_inverse, kernel_w, dk, dv):
    index = cuda.grid(1)
    if index >= dk.size // dk.shape[3]:
        return
    m, key_row, key_col = _query(index, dk)
    for c in range(dk.shape[3]):
        dk[m, key_row, key_col, c] = 0.0
        dv[m, key_row, key_col, c] = 0.0
    for a in range(row_inverse.count[key_row]):
        x = row_inverse.queries[key_row, a]
        for b in range(col_inverse.count[key_col]):
            y = col_inverse.queries[key_col, b]
            slot = row_inverse.slots[key_row, a] * kernel_w + col_inverse.slots[key_col, b]
            dlogit = dlogits[m, x, y, slot]
            weight = attn[m, x, y, slot]
            for c in range(dk.shape[3]):
                dk[m, key_row, key_col, c] += scale * dlogit * q[m, x, y, c]
                dv[m, key_row, key_col, c] += weight * dout[m, x, y, c]


def _launch_backward_keys(q, dout, attn, dlogits, scale, row_inverse, col_inverse, kernel_w, dk, dv):
    _backward_keys_kernel[grid_1d(dk.size // dk.shape[3])](q, dout, attn, dlogits, scale, row_inverse, col_inverse,
                                                           kernel_w, dk, dv)


@cuda.jit
def _backward_bias_kernel(dlogits, heads, rows, cols, kernel_w, drpb):
    maps, height, width, slots = dlogits.shape
    _, bias_rows, bias_cols = drpb.shape
    index = cuda.grid(1)
    if index >= drpb.size:
        return
    head = index // (bias_rows * bias_cols)
    r = (index // bias_cols) % bias_rows
    c = index % bias_cols
    acc = 0.0
    for x in range(height):
        u = r - rows.first_bias[x]
        if u < 0 or u >= rows.key_count[x]:
            continue
        for y in range(width):
            w = c - cols.first_bias[y]
            if w < 0 or w >= cols.key_count[y]:
                continue
            for m in range(head, maps, heads):
                acc += dlogits[m, x, y, u * kernel_w + w]
    drpb[head, r, c] = acc


def _launch_backward_bias(dlogits, heads, rows, cols, kernel_w, drpb):
    _backward_bias_kernel[grid_1d(drpb.size)](dlogits, heads, rows, cols, kernel_w, drpb)


def _tables(height, width, options):
    axes = [(n, options.kernel_size[a], options.dilation[a], options.stride[a], options.is_causal[a])
            for a, n in enumerate((height, width))]
    bounds = [type(b)(*to_device(*b)) for b in (axis_bounds(*axis) for axis in axes)]
    return axes, bounds


def _flat(a):
    return a.reshape((a.shape[0] * a.shape[1],) + tuple(a.shape[2:]))


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> ``(out, attn)``;
    ``attn (B, heads, H, W, kh*kw)`` stays on the device for the backward pass."""
    on_device = any_device(q, k, v, rpb)
    batch, heads, height, width, head_dim = q.shape
    dtype = np.dtype(q.dtype)
    bias = np.zeros((heads, 0, 0), dtype) if rpb is None else rpb
    q, k, v, bias = to_device(q, k, v, bias)
    _, (rows, cols) = _tables(height, width, options)
    kernel_h, kernel_w = options.kernel_size
    out = empty((batch * heads, height, width, head_dim), dtype)
    attn = empty((batch * heads, height, width, kernel_h * kernel_w), dtype)
    _launch_forward(_flat(q), _flat(k), _flat(v), bias, heads, dtype.type(options.scale), rows, cols,
                    options.dilation, kernel_w, out, attn)
    attn = attn.reshape((batch, heads, height, width, kernel_h * kernel_w))
    return to_host_unless(on_device, out.reshape(q.shape)), attn


def backward(dout, q, k, v, rpb, out, attn, options):
    """-> ``(dq, dk, dv, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    on_device = any_device(dout, q, k, v)
    batch, heads, height, width, head_dim = q.shape
    dtype = np.dtype(q.dtype)
    scale = dtype.type(options.scale)
    dout, q, k, v, out, attn = (_flat(a) for a in to_device(dout, q, k, v, out, attn))
    axes, (rows, cols) = _tables(height, width, options)
    row_inverse, col_inverse = (type(t)(*to_device(*t)) for t in (inverse_windows(axis_windows(*a)) for a in axes))
    kernel_w = options.kernel_size[1]
    dlogits = empty(attn.shape, dtype)
    dq, dk, dv = (empty(q.shape, dtype) for _ in range(3))
    _launch_backward_queries(dout, k, v, out, attn, scale, rows, cols, options.dilation, kernel_w, dlogits, dq)
    _launch_backward_keys(q, dout, attn, dlogits, scale, row_inverse, col_inverse, kernel_w, dk, dv)
    drpb = None
    if rpb is not None:
        drpb = empty(rpb.shape, dtype)
        _launch_backward_bias(dlogits, heads, rows, cols, kernel_w, drpb)
    shape = (batch, heads, height, width, head_dim)
    return to_host_unless(on_device, dq.reshape(shape), dk.reshape(shape), dv.reshape(shape), drpb)
