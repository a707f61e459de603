r"""Dense and grouped 2-D convolution on the GPU: direct kernels, channels-last.

With ``G`` groups, ``C_g = C_in/G``, ``O_g = C_out/G`` and ``g = o // O_g``:

.. math::  y_{b,u,v,o} = \beta_o + \sum_{c,i,j} x_{b,\,u s_h - p_h + i d_h,\,v s_w - p_w + j d_w,\,g C_g + c}\;w_{o,c,i,j}

* forward: one thread per output element.
* dx (gather): one thread per input element ``(b, h, w, g C_g + c)``; it sums
  :math:`\delta_{b,u,v,o}\,w_{o,c,i,j}` over the ``O_g`` outputs of its group and the taps whose
  output position :math:`u = (h + p_h - i d_h)/s_h`, :math:`v = (w + p_w - j d_w)/s_w` is whole and in range.
* dweight: one block per weight element ``(o, c, i, j)``; its threads stride over the output
  pixels and add their partial sums in shared memory (one writer per element, no atomics).
* dbias: the channel-sum kernel of the depthwise module.

Sums are kept in float64 registers and rounded once on store.

The entries :func:`forward` and :func:`backward` pick the algorithm: a depthwise convolution
(``groups == C_in == C_out``) runs on the kernels of :mod:`refvit.kernels.cuda.depthwise_conv2d`.
"""
import numba
from numba import cuda

from refvit.kernels.cuda._device import (
    SIMULATOR, any_device, empty, grid_1d, to_device, to_host_unless, zeros,
)
from refvit.kernels.cuda import depthwise_conv2d
from refvit.kernels.cuda.depthwise_conv2d import channel_sums
from refvit.kernels.cuda._window import reached_output
from refvit.ops.conv2d import is_depthwise

# threads per dweight block (a power of two)
REDUCE_THREADS = 8 if SIMULATOR else 128


@cuda.jit
def _forward_kernel(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    index = cuda.grid(1)
    if index >= out.size:
        return
    batch, out_h, out_w, out_channels = out.shape
    height, width, in_channels = x.shape[1], x.shape[2], x.shape[3]
    group_in, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    group_out = out_channels // (in_channels // group_in)
    o = index % out_channels
    v = (index // out_channels) % out_w
    u = (index // (out_channels * out_w)) % out_h
    b = index // (out_channels * out_w * out_h)
    first_channel = (o // group_out) * group_in
    total = 0.0
    for i in range(kh):
        h = u * stride_h - pad_h + i * dil_h
        if h < 0 or h >= height:
            continue
        for j in range(kw):
            w = v * stride_w - pad_w + j * dil_w
            if w < 0 or w >= width:
                continue
            for c in range(group_in):
                total += x[b, h, w, first_channel + c] * weight[o, c, i, j]
    out[b, u, v, o] = total + bias[o]


@cuda.jit
def _grad_input_kernel(dout, weight, dx, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    index = cuda.grid(1)
    if index >= dx.size:
        return
    batch, height, width, in_channels = dx.shape
    out_h, out_w, out_channels = dout.shape[1], dout.shape[2], dout.shape[3]
    group_in, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    group_out = out_channels // (in_channels // group_in)
    channel = index % in_channels
    w = (index // in_channels) % width
    h = (index // (in_channels * width)) % height
    b = index // (in_channels * width * height)
    group = channel // group_in
    c = channel % group_in
    total = 0.0
    for i in range(kh):
        u = reached_output(h, pad_h, i * dil_h, stride_h, out_h)
        if u < 0:
            continue
        for j in range(kw):
            v = reached_output(w, pad_w, j * dil_w, stride_w, out_w)
            if v < 0:
                continue
            for o in range(group * group_out, (group + 1) * group_out):
                total += dout[b, u, v, o] * weight[o, c, i, j]
    dx[b, h, w, channel] = total


@cuda.jit
def _grad_weight_kernel(dout, x, dweight, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """One block per element of ``dweight (C_out, C_g, kh, kw)``."""
    batch, out_h, out_w, out_channels = dout.shape
    height, width, in_channels = x.shape[1], x.shape[2], x.shape[3]
    group_in, kh, kw = dweight.shape[1], dweight.shape[2], dweight.shape[3]
    group_out = out_channels // (in_channels // group_in)
    element = cuda.blockIdx.x
    j = element % kw
    i = (element // kw) % kh
    c = (element // (kw * kh)) % group_in
    o = element // (kw * kh * group_in)
    channel = (o // group_out) * group_in + c
    lane = cuda.threadIdx.x
    total = 0.0
    for pixel in range(lane, batch * out_h * out_w, REDUCE_THREADS):
        v = pixel % out_w
        u = (pixel // out_w) % out_h
        b = pixel // (out_w * out_h)
        h = u * stride_h - pad_h + i * dil_h
        w = v * stride_w - pad_w + j * dil_w
        if 0 <= h < height and 0 <= w < width:
            total += dout[b, u, v, o] * x[b, h, w, channel]
    lane_sums = cuda.shared.array(REDUCE_THREADS, dtype=numba.float64)
    lane_sums[lane] = total
    cuda.syncthreads()
    step = REDUCE_THREADS // 2
    while step > 0:
        if lane < step:
            lane_sums[lane] += lane_sums[lane + step]
        cuda.syncthreads()
        step //= 2
    if lane == 0:
        dweight[o, c, i, j] = lane_sums[0]


def _window_args(window):
    (stride_h, stride_w), (pad_h, pad_w), (dil_h, dil_w) = window.stride, window.padding, window.dilation
    return stride_h, stride_w, pad_h, pad_w, dil_h, dil_w


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in/G, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    if is_depthwise(x.shape[3], weight.shape[0], x.shape[3] // weight.shape[1]):
        return depthwise_conv2d.forward(x, weight, bias, window)
    on_device = any_device(x, weight, bias)
    x, weight, bias = to_device(x, weight, bias)
    batch, height, width, _ = x.shape
    out = empty((batch, *window.output_size(height, width), weight.shape[0]), x.dtype)
    if bias is None:
        bias = zeros((weight.shape[0],), x.dtype)
    _forward_kernel[grid_1d(out.size)](x, weight, bias, out, *_window_args(window))
    return to_host_unless(on_device, out)


def backward(dout, x, weight, has_bias, window):
    """-> ``(dx, dweight, dbias)``, ``dbias`` None without a bias."""
    if is_depthwise(x.shape[3], weight.shape[0], x.shape[3] // weight.shape[1]):
        return depthwise_conv2d.backward(dout, x, weight, has_bias, window)
    on_device = any_device(dout, x, weight)
    dout, x, weight = to_device(dout, x, weight)
    dx = empty(x.shape, x.dtype)
    _grad_input_kernel[grid_1d(dx.size)](dout, weight, dx, *_window_args(window))
    dweight = empty(weight.shape, x.dtype)
    _grad_weight_kernel[dweight.size, REDUCE_THREADS](dout, x, dweight, *_window_args(window))
    dbias = channel_sums(dout) if has_bias else None
    return to_host_unless(on_device, dx, dweight, dbias)
