r"""Depthwise 2-D convolution on the GPU (``groups == C_in == C_out``), channels-last.

.. math::  y_{b,u,v,c} = \beta_c + \sum_{i,j} x_{b,\,u s_h - p_h + i d_h,\,v s_w - p_w + j d_w,\,c}\;w_{c,0,i,j}

* forward: one thread per output element; the channel is the fastest index, so neighbouring
  threads read neighbouring addresses.
* dx (gather): one thread per input element ``(b, h, w, c)``; it sums
  :math:`\delta_{b,u,v,c}\,w_{c,0,i,j}` over the taps whose output :math:`u = (h + p_h - i d_h)/s_h`,
  :math:`v = (w + p_w - j d_w)/s_w` is a whole in-range position.
* dweight: one block per (tap, run of channels). Threads along ``x`` take one channel each,
  threads along ``y`` stride over the output pixels; the ``y`` partial sums are added in shared
  memory, so each weight is written once, by one thread, without atomics.
* dbias: the same block reduction over output pixels, one block per run of channels.

Sums are kept in float64 registers and rounded once on store.
"""
import numba
from numba import cuda

from refvit.kernels.cuda._device import (
    SIMULATOR, any_device, empty, grid_1d, to_device, to_host_unless, zeros,
)
from refvit.kernels.cuda._window import nhwc_position, reached_output

# threads per reduction block: (channels, pixel lanes); the lane count is a power of two
CHANNEL_LANES, PIXEL_LANES = (4, 4) if SIMULATOR else (32, 8)


@cuda.jit
def _forward_kernel(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    index = cuda.grid(1)
    if index >= out.size:
        return
    batch, out_h, out_w, channels = out.shape
    height, width = x.shape[1], x.shape[2]
    kh, kw = weight.shape[2], weight.shape[3]
    b, u, v, c = nhwc_position(index, out_h, out_w, channels)
    total = 0.0
    for i in range(kh):
        h = u * stride_h - pad_h + i * dil_h
        if h < 0 or h >= height:
            continue
        for j in range(kw):
            w = v * stride_w - pad_w + j * dil_w
            if 0 <= w < width:
                total += x[b, h, w, c] * weight[c, 0, i, j]
    out[b, u, v, c] = total + bias[c]


@cuda.jit
def _grad_input_kernel(dout, weight, dx, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    index = cuda.grid(1)
    if index >= dx.size:
        return
    batch, height, width, channels = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    kh, kw = weight.shape[2], weight.shape[3]
    b, h, w, c = nhwc_position(index, height, width, channels)
    total = 0.0
    for i in range(kh):
        u = reached_output(h, pad_h, i * dil_h, stride_h, out_h)
        if u < 0:
            continue
        for j in range(kw):
            v = reached_output(w, pad_w, j * dil_w, stride_w, out_w)
            if v >= 0:
                total += dout[b, u, v, c] * weight[c, 0, i, j]
    dx[b, h, w, c] = total


@cuda.jit
def _grad_weight_kernel(dout, x, dweight, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """Block ``(tap, channel run)``; ``threadIdx.x`` = channel in the run, ``threadIdx.y`` = pixel lane."""
    batch, out_h, out_w, channels = dout.shape
    height, width = x.shape[1], x.shape[2]
    kw = dweight.shape[3]
    tap = cuda.blockIdx.y
    i = tap // kw
    j = tap % kw
    c = cuda.blockIdx.x * CHANNEL_LANES + cuda.threadIdx.x
    lane = cuda.threadIdx.y
    total = 0.0
    if c < channels:
        for pixel in range(lane, batch * out_h * out_w, PIXEL_LANES):
            v = pixel % out_w
            u = (pixel // out_w) % out_h
            b = pixel // (out_w * out_h)
            h = u * stride_h - pad_h + i * dil_h
            w = v * stride_w - pad_w + j * dil_w
            if 0 <= h < height and 0 <= w < width:
                total += dout[b, u, v, c] * x[b, h, w, c]
    lane_sums = cuda.shared.array((PIXEL_LANES, CHANNEL_LANES), dtype=numba.float64)
    _add_lanes(lane_sums, total)
    if lane == 0 and c < channels:
        dweight[c, 0, i, j] = lane_sums[0, cuda.threadIdx.x]


@cuda.jit
def _channel_sums_kernel(rows, sums):
    """``sums[c] = sum_n rows[n, c]``; block = run of channels x pixel lanes."""
    count, channels = rows.shape
    c = cuda.blockIdx.x * CHANNEL_LANES + cuda.threadIdx.x
    total = 0.0
    if c < channels:
        for n in range(cuda.threadIdx.y, count, PIXEL_LANES):
            total += rows[n, c]
    lane_sums = cuda.shared.array((PIXEL_LANES, CHANNEL_LANES), dtype=numba.float64)
    _add_lanes(lane_sums, total)
    if cuda.threadIdx.y == 0 and c < channels:
        sums[c] = lane_sums[0, cuda.threadIdx.x]


@cuda.jit(device=True)
def _add_lanes(lane_sums, value):
    """Tree sum over ``threadIdx.y`` in shared memory; the result lands in ``lane_sums[0, threadIdx.x]``."""
    lane = cuda.threadIdx.y
    column = cuda.threadIdx.x
    lane_sums[lane, column] = value
    cuda.syncthreads()
    step = PIXEL_LANES // 2
    while step > 0:
        if lane < step:
            lane_sums[lane, column] += lane_sums[lane + step, column]
        cuda.syncthreads()
        step //= 2


def _window_args(window):
    (stride_h, stride_w), (pad_h, pad_w), (dil_h, dil_w) = window.stride, window.padding, window.dilation
    return stride_h, stride_w, pad_h, pad_w, dil_h, dil_w


def _channel_blocks(channels):
    return (channels + CHANNEL_LANES - 1) // CHANNEL_LANES


def channel_sums(dout):
    """Device ``dout (..., C)`` summed over every axis but the last -> device ``(C,)``."""
    channels = tuple(dout.shape)[-1]
    rows = dout.reshape(dout.size // channels, channels)
    sums = empty((channels,), dout.dtype)
    _channel_sums_kernel[_channel_blocks(channels), (CHANNEL_LANES, PIXEL_LANES)](rows, sums)
    return sums


def forward(x, weight, bias, window):
    on_device = any_device(x, weight, bias)
    x, weight, bias = to_device(x, weight, bias)
    batch, height, width, channels = x.shape
    out = empty((batch, *window.output_size(height, width), channels), x.dtype)
    if bias is None:
        bias = zeros((channels,), x.dtype)
    _forward_kernel[grid_1d(out.size)](x, weight, bias, out, *_window_args(window))
    return to_host_unless(on_device, out)


def backward(dout, x, weight, has_bias, window):
    on_device = any_device(dout, x, weight)
    dout, x, weight = to_device(dout, x, weight)
    dx = empty(x.shape, x.dtype)
    _grad_input_kernel[grid_1d(dx.size)](dout, weight, dx, *_window_args(window))
    dweight = empty(weight.shape, x.dtype)
    grid = (_channel_blocks(x.shape[3]), weight.shape[2] * weight.shape[3])
    _grad_weight_kernel[grid, (CHANNEL_LANES, PIXEL_LANES)](dout, x, dweight, *_window_args(window))
    dbias = channel_sums(dout) if has_bias else None
    return to_host_unless(on_device, dx, dweight, dbias)
