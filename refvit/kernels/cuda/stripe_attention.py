"""Stripe attention with LePE on the GPU: one thread per query (forward, dq), per key (dk, dv),
per LePE parameter (dweight, dbias).

Threads index the window's tokens in place in the ``(B, heads, H, W, d)`` arrays: the window of
``(y, x)`` has its top-left corner at ``(y - y % sh, x - x % sw)``. The window size is only known at
run time, so no thread keeps a ``sh*sw`` buffer: the forward uses the online softmax (running
maximum, running sum, accumulator rescaled when the maximum grows), accumulating directly in its
own row of the output. Backward recomputes ``P_ij = exp(s_ij - lse_i)`` from the saved
log-sum-exp. Saved for backward: ``A (B, heads, H, W, d)`` and ``lse (B, heads, H, W)`` (float64).
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless, zeros
from refvit.kernels.cuda._window import nhwc_position


@cuda.jit(device=True)
def _lepe_gather(values, weight, b, head, y, x, j, top, left, stripe, direction):
    """``sum_{a,e} w[a, e] values[y + direction*(a-1), x + direction*(e-1)]`` inside the window."""
    total = 0.0
    for a in range(3):
        yy = y + direction * (a - 1)
        if yy >= top and yy < top + stripe[0]:
            for e in range(3):
                xx = x + direction * (e - 1)
                if xx >= left and xx < left + stripe[1]:
                    total += weight[head, j, a, e] * values[b, head, yy, xx, j]
    return total


@cuda.jit(device=True)
def _token(index, a, stripe):
    """Flat thread index -> ``(b, head, y, x)`` of a token of ``a (B, heads, H, W, d)``, and the
    top-left corner ``(top, left)`` of its window."""
    b, head, y, x = nhwc_position(index, a.shape[1], a.shape[2], a.shape[3])
    return b, head, y, x, y - y % stripe[0], x - x % stripe[1]


@cuda.jit(device=True)
def _window_token(t, top, left, stripe):
    """``(row, column)`` of the ``t``-th token, row-major, of the window with top-left corner ``(top, left)``."""
    return top + t // stripe[1], left + t % stripe[1]


@cuda.jit(device=True)
def _dot(a, other, b, head, y, x, other_y, other_x):
    """``a[b, head, y, x, :] . other[b, head, other_y, other_x, :]`` in float64."""
    total = 0.0
    for j in range(a.shape[4]):
        total += a[b, head, y, x, j] * other[b, head, other_y, other_x, j]
    return total


@cuda.jit
def _forward_kernel(q, k, v, weight, bias, has_lepe, stripe, scale, out, attended, logsumexp):
    b, head, y, x, top, left = _token(cuda.grid(1), q, stripe)
    if b >= q.shape[0]:
        return
    head_dim = q.shape[4]
    for j in range(head_dim):
        attended[b, head, y, x, j] = 0.0
    largest = -math.inf
    total = 0.0
    for t in range(stripe[0] * stripe[1]):
        ky, kx = _window_token(t, top, left, stripe)
        s = _dot(q, k, b, head, y, x, ky, kx) * scale
        if s > largest:
            rescale = math.exp(largest - s)
            total *= rescale
            for j in range(head_dim):
                attended[b, head, y, x, j] *= rescale
            largest = s
        p = math.exp(s - largest)
        total += p
        for j in range(head_dim):
            attended[b, head, y, x, j] += p * v[b, head, ky, kx, j]
    logsumexp[b, head, y, x] = largest + math.log(total)
    for j in range(head_dim):
        value = attended[b, head, y, x, j] / total
        attended[b, head, y, x, j] = value
        if has_lepe:
            value += bias[head, j] + _lepe_gather(v, weight, b, head, y, x, j, top, left, stripe, 1)
        out[b, head, y, x, j] = value


@cuda.jit
def _delta_kernel(dout, attended, delta):
    index = cuda.grid(1)
    if index < delta.size:
        b, head, y, x = nhwc_position(index, dout.shape[1], dout.shape[2], dout.shape[3])
        delta[b, head, y, x] = _dot(dout, attended, b, head, y, x, y, x)


@cuda.jit
def _dq_kernel(dout, q, k, v, logsumexp, delta, stripe, scale, dq):
    b, head, y, x, top, left = _token(cuda.grid(1), q, stripe)
    if b >= q.shape[0]:
        return
    for j in range(q.shape[4]):
        dq[b, head, y, x, j] = 0.0
    for t in range(stripe[0] * stripe[1]):
        ky, kx = _window_token(t, top, left, stripe)
        s = _dot(q, k, b, head, y, x, ky, kx)
        dp = _dot(dout, v, b, head, y, x, ky, kx)
        ds = math.exp(scale * s - logsumexp[b, head, y, x]) * (dp - delta[b, head, y, x])
        for j in range(q.shape[4]):
            dq[b, head, y, x, j] += scale * ds * k[b, head, ky, kx, j]


@cuda.jit
def _dk_dv_kernel(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe, scale, dk, dv):
    b, head, y, x, top, left = _token(cuda.grid(1), q, stripe)
    if b >= q.shape[0]:
        return
    for j in range(q.shape[4]):
        dk[b, head, y, x, j] = 0.0
        dv[b, head, y, x, j] = 0.0
    for t in range(stripe[0] * stripe[1]):
        qy, qx = _window_token(t, top, left, stripe)
        s = _dot(q, k, b, head, qy, qx, y, x)
        dp = _dot(dout, v, b, head, qy, qx, y, x)
        p = math.exp(scale * s - logsumexp[b, head, qy, qx])
        ds = p * (dp - delta[b, head, qy, qx])
        for j in range(q.shape[4]):
            dv[b, head, y, x, j] += p * dout[b, head, qy, qx, j]
            dk[b, head, y, x, j] += scale * ds * q[b, head, qy, qx, j]
    if has_lepe:
        for j in range(q.shape[4]):
            dv[b, head, y, x, j] += _lepe_gather(dout, weight, b, head, y, x, j, top, left, stripe, -1)


@cuda.jit
def _dlepe_kernel(dout, v, stripe, dweight, dbias):
    """One thread per (channel, tap): taps 0..8 are ``w[a, e]`` with ``a*3 + e``; tap 9 is the bias."""
    batch, heads, height, width, head_dim = v.shape
    index = cuda.grid(1)
    if index >= heads * head_dim * 10:
        return
    tap = index % 10
    channel = index // 10
    head = channel // head_dim
    j = channel % head_dim
    a = tap // 3
    e = tap % 3
    total = 0.0
    for b in range(batch):
        for y in range(height):
            top = y - y % stripe[0]
            yy = y + a - 1
            for x in range(width):
                g = dout[b, head, y, x, j]
                if tap == 9:
                    total += g
                else:
                    left = x - x % stripe[1]
                    xx = x + e - 1
                    if yy >= top and yy < top + stripe[0] and xx >= left and xx < left + stripe[1]:
                        total += g * v[b, head, yy, xx, j]
    if tap == 9:
        dbias[head, j] = total
    else:
        dweight[head, j, a, e] = total


def _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, dtype):
    """Device LePE parameters ``(heads, d, 3, 3)`` and ``(heads, d)``; zeros (unused) when absent."""
    if lepe_weight is None:
        return zeros((heads, head_dim, 3, 3), dtype), zeros((heads, head_dim), dtype), False
    (weight,) = to_device(lepe_weight)
    weight = weight.reshape(heads, head_dim, 3, 3)
    if lepe_bias is None:
        return weight, zeros((heads, head_dim), dtype), True
    (bias,) = to_device(lepe_bias)
    return weight, bias.reshape(heads, head_dim), True


def forward(q, k, v, lepe_weight, lepe_bias, stripe_size, scale):
    """``-> (out, saved)``; ``saved`` holds device arrays for :func:`backward`."""
    on_device = any_device(q, k, v, lepe_weight, lepe_bias)
    q, k, v = to_device(q, k, v)
    heads, head_dim = q.shape[1], q.shape[4]
    weight, bias, has_lepe = _lepe_tables(lepe_weight, lepe_bias, heads, head_dim, q.dtype)
    out = empty(q.shape, q.dtype)
    attended = empty(q.shape, q.dtype)
    logsumexp = empty(q.shape[:4], np.float64)
    _forward_kernel[grid_1d(logsumexp.size)](q, k, v, weight, bias, has_lepe, tuple(stripe_size), float(scale),
                                             out, attended, logsumexp)
    return to_host_unless(on_device, out), (q, k, v, weight, has_lepe, attended, logsumexp, on_device)


def backward(dout, saved, has_bias, stripe_size, scale):
    """``-> (dq, dk, dv, dlepe_weight, dlepe_bias)``, device arrays iff forward or ``dout`` used them."""
    q, k, v, weight, has_lepe, attended, logsumexp, forward_on_device = saved
    on_device = forward_on_device or any_device(dout)
    (dout,) = to_device(dout)
    stripe = tuple(stripe_size)
    grid = grid_1d(logsumexp.size)
    delta = empty(logsumexp.shape, np.float64)
    _delta_kernel[grid](dout, attended, delta)
    dq, dk, dv = (empty(q.shape, q.dtype) for _ in range(3))
    _dq_kernel[grid](dout, q, k, v, logsumexp, delta, stripe, float(scale), dq)
    _dk_dv_kernel[grid](dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe, float(scale), dk, dv)
    if not has_lepe:
        return (*to_host_unless(on_device, dq, dk, dv), None, None)
    heads, head_dim = weight.shape[0], weight.shape[1]
    dweight = empty(weight.shape, q.dtype)
    dbias = empty((heads, head_dim), q.dtype)
    _dlepe_kernel[grid_1d(heads * head_dim * 10)](dout, v, stripe, dweight, dbias)
    dweight = to_host_unless(on_device, dweight.reshape(heads * head_dim, 1, 3, 3))
    dbias = to_host_unless(on_device, dbias.reshape(heads * head_dim)) if has_bias else None
    return (*to_host_unless(on_device, dq, dk, dv), dweight, dbias)
