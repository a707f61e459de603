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

Sums are kept in float64 registers and rounded once on store. The tap loops are the device functions of
:mod:`refvit.kernels.cuda._conv`.

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
from refvit.kernels.cuda._conv import add_lanes, tap_gather, tap_products, tap_sum
from refvit.kernels.cuda._window import nhwc_position
from refvit.ops.conv2d import is_depthwise

# threads per dweight block (a power of two)
REDUCE_THREADS = 8 if SIMULATOR else 128


@cuda.jit
def _forward_kernel(x, weight, bias, out, stride, pad, dilation):
    index = cuda.grid(1)
    if index < out.size:
        group_in = weight.shape[1]
        b, u, v, o = nhwc_position(index, out.shape[1], out.shape[2], out.shape[3])
        first_channel = (o // (out.shape[3] // (x.shape[3] // group_in))) * group_in
        out[b, u, v, o] = tap_sum(x, weight, b, u, v, o, first_channel, group_in, stride, pad, dilation) + bias[o]


@cuda.jit
def _grad_input_kernel(dout, weight, dx, stride, pad, dilation):
    index = cuda.grid(1)
    if index < dx.size:
        b, h, w, channel = nhwc_position(index, dx.shape[1], dx.shape[2], dx.shape[3])
        group_in = weight.shape[1]
        group_out = dout.shape[3] // (dx.shape[3] // group_in)
        first_out = (channel // group_in) * group_out
        dx[b, h, w, channel] = tap_gather(dout, weight, b, h, w, channel % group_in, first_out, group_out,
                                          stride, pad, dilation)


@cuda.jit
def _grad_weight_kernel(dout, x, dweight, stride, pad, dilation):
    """One block per element ``(o, c, i, j)`` of ``dweight (C_out, C_g, kh, kw)``; its threads are pixel lanes."""
    group_in, kh, kw = dweight.shape[1], dweight.shape[2], dweight.shape[3]
    group_out = dout.shape[3] // (x.shape[3] // group_in)
    element = cuda.blockIdx.x
    j = element % kw
    i = (element // kw) % kh
    c = (element // (kw * kh)) % group_in
    o = element // (kw * kh * group_in)
    lane = cuda.threadIdx.x
    total = tap_products(dout, x, o, (o // group_out) * group_in + c, i, j, lane, REDUCE_THREADS, stride, pad, dilation)
    lane_sums = cuda.shared.array((REDUCE_THREADS, 1), dtype=numba.float64)
    add_lanes(lane_sums, lane, 0, total)
    if lane == 0:
        dweight[o, c, i, j] = lane_sums[0, 0]


def _window_args(window):
    """The kernels' geometry arguments: ``stride``, ``pad``, ``dilation``, each ``(along H, along W)``."""
    return tuple(window.stride), tuple(window.padding), tuple(window.dilation)


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


def backward(dout, x, weight, has_bias, window, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``, ``dbias`` None without a bias; ``needs``: whether ``dx`` and ``dweight``
    are wanted (``None`` in their place when not, and their kernels not launched)."""
    if is_depthwise(x.shape[3], weight.shape[0], x.shape[3] // weight.shape[1]):
        return depthwise_conv2d.backward(dout, x, weight, has_bias, window, needs)
    on_device = any_device(dout, x, weight)
    dout, x, weight = to_device(dout, x, weight)
    dx = dweight = None
    if needs[0]:
        dx = empty(x.shape, x.dtype)
        _grad_input_kernel[grid_1d(dx.size)](dout, weight, dx, *_window_args(window))
    if needs[1]:
        dweight = empty(weight.shape, x.dtype)
        _grad_weight_kernel[dweight.size, REDUCE_THREADS](dout, x, dweight, *_window_args(window))
    dbias = channel_sums(dout) if has_bias else None
    return to_host_unless(on_device, dx, dweight, dbias)
