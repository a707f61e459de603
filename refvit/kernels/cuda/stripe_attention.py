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


@cuda.jit(device=True)
def _lepe_gather(values, weight, b, head, y, x, j, top, left, stripe_h, stripe_w, direction):
    """``sum_{a,e} w[a, e] values[y + direction*(a-1), x + direction*(e-1)]`` inside the window."""
    total = 0.0
    for a in range(3):
        yy = y + direction * (a - 1)
        if yy >= top and yy < top + stripe_h:
            for e in range(3):
                xx = x + direction * (e - 1)
                if xx >= left and xx < left + stripe_w:
                    total += weight[head, j, a, e] * values[b, head, yy, xx, j]
    return total


@cuda.jit(device=True)
def _token(index, heads, height, width):
    """Flat thread index -> ``(b, head, y, x)``."""
    x = index % width
    y = (index // width) % height
    head = (index // (width * height)) % heads
    b = index // (width * height * heads)
    return b, head, y, x


@cuda.jit
def _forward_kernel(q, k, v, weight, bias, has_lepe, stripe_h, stripe_w, scale, out, attended, logsumexp):
    batch, heads, height, width, head_dim = q.shape
    index = cuda.grid(1)
    if index >= batch * heads * height * width:
        return
    b, head, y, x = _token(index, heads, height, width)
    top = y - y % stripe_h
    left = x - x % stripe_w
    for j in range(head_dim):
        attended[b, head, y, x, j] = 0.0
    largest = -math.inf
    total = 0.0
    for t in range(stripe_h * stripe_w):
        ky = top + t // stripe_w
        kx = left + t % stripe_w
        s = 0.0
        for j in range(head_dim):
            s += q[b, head, y, x, j] * k[b, head, ky, kx, j]
        s *= scale
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
            value += bias[head, j] + _lepe_gather(v, weight, b, head, y, x, j, top, left, stripe_h, stripe_w, 1)
        out[b, head, y, x, j] = value


@cuda.jit
def _delta_kernel(dout, attended, delta):
    batch, heads, height, width, head_dim = dout.shape
    index = cuda.grid(1)
    if index >= batch * heads * height * width:
        return
    b, head, y, x = _token(index, heads, height, width)
    total = 0.0
    for j in range(head_dim):
        total += dout[b, head, y, x, j] * attended[b, head, y, x, j]
    delta[b, head, y, x] = total


@cuda.jit
def _dq_kernel(dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, scale, dq):
    batch, heads, height, width, head_dim = q.shape
    index = cuda.grid(1)
    if index >= batch * heads * height * width:
        return
    b, head, y, x = _token(index, heads, height, width)
    top = y - y % stripe_h
    left = x - x % stripe_w
    for j in range(head_dim):
        dq[b, head, y, x, j] = 0.0
    for t in range(stripe_h * stripe_w):
        ky = top + t // stripe_w
        kx = left + t % stripe_w
        s = 0.0
        dp = 0.0
        for j in range(head_dim):
            s += q[b, head, y, x, j] * k[b, head, ky, kx, j]
            dp += dout[b, head, y, x, j] * v[b, head, ky, kx, j]
        ds = math.exp(scale * s - logsumexp[b, head, y, x]) * (dp - delta[b, head, y, x])
        for j in range(head_dim):
            dq[b, head, y, x, j] += scale * ds * k[b, head, ky, kx, j]


@cuda.jit
def _dk_dv_kernel(dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, scale, dk, dv):
    batch, heads, height, width, head_dim = q.shape
    index = cuda.grid(1)
    if index >= batch * heads * height * width:
        return
    b, head, y, x = _token(index, heads, height, width)
    top = y - y % stripe_h
    left = x - x % stripe_w
    for j in range(head_dim):
        dk[b, head, y, x, j] = 0.0
        dv[b, head, y, x, j] = 0.0
    for t in range(stripe_h * stripe_w):
        qy = top + t // stripe_w
        qx = left + t % stripe_w
        s = 0.0
        dp = 0.0
        for j in range(head_dim):
            s += q[b, head, qy, qx, j] * k[b, head, y, x, j]
            dp += dout[b, head, qy, qx, j] * v[b, head, y, x, j]
        p = math.exp(scale * s - logsumexp[b, head, qy, qx])
        ds = p * (dp - delta[b, head, qy, qx])
        for j in range(head_dim):
            dv[b, head, y, x, j] += p * dout[b, head, qy, qx, j]
            dk[b, head, y, x, j] += scale * ds * q[b, head, qy, qx, j]
    if has_lepe:
        for j in range(head_dim):
            dv[b, head, y, x, j] += _lepe_gather(dout, weight, b, head, y, x, j, top, left, stripe_h, stripe_w, -1)


@cuda.jit
def _dlepe_kernel(dout, v, stripe_h, stripe_w, dweight, dbias):
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
            top = y - y % stripe_h
            yy = y + a - 1
            for x in range(width):
                g = dout[b, head, y, x, j]
                if tap == 9:
                    total += g
                else:
                    left = x - x % stripe_w
                    xx = x + e - 1
                    if yy >= top and yy < top + stripe_h and xx >= left and xx < left + stripe_w:
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
    _forward_kernel[grid_1d(logsumexp.size)](q, k, v, weight, bias, has_lepe, stripe_size[0], stripe_size[1],
                                             float(scale), out, attended, logsumexp)
    return to_host_unless(on_device, out), (q, k, v, weight, has_lepe, attended, logsumexp, on_device)


def backward(dout, saved, has_bias, stripe_size, scale):
    """``-> (dq, dk, dv, dlepe_weight, dlepe_bias)``, device arrays iff forward or ``dout`` used them."""
    q, k, v, weight, has_lepe, attended, logsumexp, forward_on_device = saved
    on_device = forward_on_device or any_device(dout)
    (dout,) = to_device(dout)
    stripe_h, stripe_w = stripe_size
    grid = grid_1d(logsumexp.size)
    delta = empty(logsumexp.shape, np.float64)
    _delta_kernel[grid](dout, attended, delta)
    dq, dk, dv = (empty(q.shape, q.dtype) for _ in range(3))
    _dq_kernel[grid](dout, q, k, v, logsumexp, delta, stripe_h, stripe_w, float(scale), dq)
    _dk_dv_kernel[grid](dout, q, k, v, logsumexp, delta, weight, has_lepe, stripe_h, stripe_w, float(scale), dk, dv)
    if not has_lepe:
        return (*to_host_unless(on_device, dq, dk, dv), None, None)
    heads, head_dim = weight.shape[0], weight.shape[1]
    dweight = empty(weight.shape, q.dtype)
    dbias = empty((heads, head_dim), q.dtype)
    _dlepe_kernel[grid_1d(heads * head_dim * 10)](dout, v, stripe_h, stripe_w, dweight, dbias)
    dweight = to_host_unless(on_device, dweight.reshape(heads * head_dim, 1, 3, 3))
    dbias = to_host_unless(on_device, dbias.reshape(heads * head_dim)) if has_bias else None
    return (*to_host_unless(on_device, dq, dk, dv), dweight, dbias)
