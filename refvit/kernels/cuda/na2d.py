"""2-D neighbourhood attention on the GPU (``na1d`` runs here too, as a map of height 1).

Layout as in :mod:`refvit.kernels.cpu.na2d`: ``q, k, v, out (B*heads, H, W, d)``, softmax weights
and their gradient ``(B*heads, H, W, kh*kw)``. Each axis' window comes as ``first`` (first key),
``count`` (keys, ``dilation`` apart) and ``bias`` (bias index of the first key) per query.

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


@cuda.jit
def _forward_kernel(q, k, v, rpb, heads, scale, row_first, row_count, row_bias, row_step,
                    col_first, col_count, col_bias, col_step, kernel_w, out, attn):
    maps, height, width, head_dim = q.shape
    index = cuda.grid(1)
    if index >= maps * height * width:
        return
    m = index // (height * width)
    x = (index // width) % height
    y = index % width
    head = m % heads
    largest = -math.inf
    for u in range(row_count[x]):
        key_row = row_first[x] + row_step * u
        for w in range(col_count[y]):
            key_col = col_first[y] + col_step * w
            logit = 0.0
            for c in range(head_dim):
                logit += q[m, x, y, c] * k[m, key_row, key_col, c]
            logit *= scale
            if rpb.shape[1] > 0:
                logit += rpb[head, row_bias[x] + u, col_bias[y] + w]
            attn[m, x, y, u * kernel_w + w] = logit
            if logit > largest or u + w == 0:
                largest = logit
    total = 0.0
    for slot in range(attn.shape[3]):
        if slot // kernel_w < row_count[x] and slot % kernel_w < col_count[y]:
            weight = math.exp(attn[m, x, y, slot] - largest)
            attn[m, x, y, slot] = weight
            total += weight
        else:
            attn[m, x, y, slot] = 0.0
    for slot in range(attn.shape[3]):
        attn[m, x, y, slot] /= total
    for c in range(head_dim):
        acc = 0.0
        for u in range(row_count[x]):
            key_row = row_first[x] + row_step * u
            for w in range(col_count[y]):
                acc += attn[m, x, y, u * kernel_w + w] * v[m, key_row, col_first[y] + col_step * w, c]
        out[m, x, y, c] = acc


def _launch_forward(q, k, v, rpb, heads, scale, rows, cols, steps, kernel_w, out, attn):
    _forward_kernel[grid_1d(out.size // out.shape[3])](
        q, k, v, rpb, heads, scale, rows.first_key, rows.key_count, rows.first_bias, steps[0],
        cols.first_key, cols.key_count, cols.first_bias, steps[1], kernel_w, out, attn)


@cuda.jit
def _backward_queries_kernel(dout, k, v, out, attn, scale, row_first, row_count, row_step,
                             col_first, col_count, col_step, kernel_w, dlogits, dq):
    maps, height, width, head_dim = k.shape
    index = cuda.grid(1)
    if index >= maps * height * width:
        return
    m = index // (height * width)
    x = (index // width) % height
    y = index % width
    grad_dot_out = 0.0
    for c in range(head_dim):
        grad_dot_out += dout[m, x, y, c] * out[m, x, y, c]
    for slot in range(dlogits.shape[3]):
        dlogits[m, x, y, slot] = 0.0
    for u in range(row_count[x]):
        key_row = row_first[x] + row_step * u
        for w in range(col_count[y]):
            key_col = col_first[y] + col_step * w
            grad_dot_v = 0.0
            for c in range(head_dim):
                grad_dot_v += dout[m, x, y, c] * v[m, key_row, key_col, c]
            slot = u * kernel_w + w
            dlogits[m, x, y, slot] = attn[m, x, y, slot] * (grad_dot_v - grad_dot_out)
    for c in range(head_dim):
        acc = 0.0
        for u in range(row_count[x]):
            key_row = row_first[x] + row_step * u
            for w in range(col_count[y]):
                acc += dlogits[m, x, y, u * kernel_w + w] * k[m, key_row, col_first[y] + col_step * w, c]
        dq[m, x, y, c] = scale * acc


def _launch_backward_queries(dout, k, v, out, attn, scale, rows, cols, steps, kernel_w, dlogits, dq):
    _backward_queries_kernel[grid_1d(dq.size // dq.shape[3])](
        dout, k, v, out, attn, scale, rows.first_key, rows.key_count, steps[0],
        cols.first_key, cols.key_count, steps[1], kernel_w, dlogits, dq)


@cuda.jit
def _backward_keys_kernel(q, dout, attn, dlogits, scale, row_queries, row_slots, row_count,
                          col_queries, col_slots, col_count, kernel_w, dk, dv):
    maps, height, width, head_dim = q.shape
    index = cuda.grid(1)
    if index >= maps * height * width:
        return
    m = index // (height * width)
    key_row = (index // width) % height
    key_col = index % width
    for c in range(head_dim):
        dk[m, key_row, key_col, c] = 0.0
        dv[m, key_row, key_col, c] = 0.0
    for a in range(row_count[key_row]):
        x = row_queries[key_row, a]
        for b in range(col_count[key_col]):
            y = col_queries[key_col, b]
            slot = row_slots[key_row, a] * kernel_w + col_slots[key_col, b]
            dlogit = dlogits[m, x, y, slot]
            weight = attn[m, x, y, slot]
            for c in range(head_dim):
                dk[m, key_row, key_col, c] += scale * dlogit * q[m, x, y, c]
                dv[m, key_row, key_col, c] += weight * dout[m, x, y, c]


def _launch_backward_keys(q, dout, attn, dlogits, scale, row_inverse, col_inverse, kernel_w, dk, dv):
    _backward_keys_kernel[grid_1d(dk.size // dk.shape[3])](
        q, dout, attn, dlogits, scale, row_inverse.queries, row_inverse.slots, row_inverse.count,
        col_inverse.queries, col_inverse.slots, col_inverse.count, kernel_w, dk, dv)


@cuda.jit
def _backward_bias_kernel(dlogits, heads, row_count, row_bias, col_count, col_bias, kernel_w, drpb):
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
        u = r - row_bias[x]
        if u < 0 or u >= row_count[x]:
            continue
        for y in range(width):
            w = c - col_bias[y]
            if w < 0 or w >= col_count[y]:
                continue
            for m in range(head, maps, heads):
                acc += dlogits[m, x, y, u * kernel_w + w]
    drpb[head, r, c] = acc


def _launch_backward_bias(dlogits, heads, rows, cols, kernel_w, drpb):
    _backward_bias_kernel[grid_1d(drpb.size)](dlogits, heads, rows.key_count, rows.first_bias,
                                              cols.key_count, cols.first_bias, kernel_w, drpb)


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
    return to_host_unless(on_device, out.reshape(q.shape)), attn.reshape((batch, heads, height, width, kernel_h * kernel_w))


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
