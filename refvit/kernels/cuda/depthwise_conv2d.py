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

Sums are kept in float64 registers and rounded once on store. The tap loops are the device functions of
:mod:`refvit.kernels.cuda._conv`.
"""
import numba
from numba import cuda

from refvit.kernels.cuda._device import (
    SIMULATOR, any_device, empty, grid_1d, to_device, to_host_unless, zeros,
)
from refvit.kernels.cuda._conv import add_lanes, tap_gather, tap_products, tap_sum
from refvit.kernels.cuda._window import nhwc_position

# threads per reduction block: (channels, pixel lanes); the lane count is a power of two
CHANNEL_LANES, PIXEL_LANES = (4, 4) if SIMULATOR else (32, 8)


@cuda.jit
def _forward_kernel(x, weight, bias, out, stride, pad, dilation):
    index = cuda.grid(1)
    if index < out.size:
        b, u, v, c = nhwc_position(index, out.shape[1], out.shape[2], out.shape[3])
        out[b, u, v, c] = tap_sum(x, weight, b, u, v, c, c, 1, stride, pad, dilation) + bias[c]


@cuda.jit
def _grad_input_kernel(dout, weight, dx, stride, pad, dilation):
    index = cuda.grid(1)
    if index < dx.size:
        b, h, w, c = nhwc_position(index, dx.shape[1], dx.shape[2], dx.shape[3])
        dx[b, h, w, c] = tap_gather(dout, weight, b, h, w, 0, c, 1, stride, pad, dilation)


@cuda.jit
def _grad_weight_kernel(dout, x, dweight, stride, pad, dilation):
    """Block ``(tap, channel run)``; ``threadIdx.x`` = channel in the run, ``threadIdx.y`` = pixel lane."""
    kw = dweight.shape[3]
    i, j = cuda.blockIdx.y // kw, cuda.blockIdx.y % kw
    c = cuda.blockIdx.x * CHANNEL_LANES + cuda.threadIdx.x
    total = 0.0
    if c < dout.shape[3]:
        total = tap_products(dout, x, c, c, i, j, cuda.threadIdx.y, PIXEL_LANES, stride, pad, dilation)
    lane_sums = cuda.shared.array((PIXEL_LANES, CHANNEL_LANES), dtype=numba.float64)
    add_lanes(lane_sums, cuda.threadIdx.y, cuda.threadIdx.x, total)
    if cuda.threadIdx.y == 0 and c < dout.shape[3]:
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
    add_lanes(lane_sums, cuda.threadIdx.y, cuda.threadIdx.x, total)
    if cuda.threadIdx.y == 0 and c < channels:
        sums[c] = lane_sums[0, cuda.threadIdx.x]


def _window_args(window):
    """The kernels' geometry arguments: ``stride``, ``pad``, ``dilation``, each ``(along H, along W)``."""
    return tuple(window.stride), tuple(window.padding), tuple(window.dilation)


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


def backward(dout, x, weight, has_bias, window, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``; ``needs``: whether ``dx`` and ``dweight`` are wanted (``None`` in their
    place when not, and their kernels not launched)."""
    on_device = any_device(dout, x, weight)
    dout, x, weight = to_device(dout, x, weight)
    dx = dweight = None
    if needs[0]:
        dx = empty(x.shape, x.dtype)
        _grad_input_kernel[grid_1d(dx.size)](dout, weight, dx, *_window_args(window))
    if needs[1]:
        dweight = empty(weight.shape, x.dtype)
        grid = (_channel_blocks(x.shape[3]), weight.shape[2] * weight.shape[3])
        _grad_weight_kernel[grid, (CHANNEL_LANES, PIXEL_LANES)](dout, x, dweight, *_window_args(window))
    dbias = channel_sums(dout) if has_bias else None
    return to_host_unless(on_device, dx, dweight, dbias)
