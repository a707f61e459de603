r"""The tap loops of the CUDA convolution kernels (``conv2d``, and ``depthwise_conv2d`` as its case
with one channel per group), as device functions.

For output ``(b, u, v, o)`` of group ``g`` (``C_g`` input channels from ``g C_g``), tap ``(i, j)``
reads input ``(b, h, w)`` with :math:`h = u s_h - p_h + i d_h`, :math:`w = v s_w - p_w + j d_w`
(taps in the padding are skipped):

* :func:`tap_sum`: :math:`\sum_{i,j,c} x_{b,h,w,gC_g+c}\,w_{o,c,i,j}` (forward),
* :func:`tap_gather`: :math:`\sum_{i,j,o} \delta_{b,u,v,o}\,w_{o,c,i,j}` over the outputs of the
  group that read input ``(b, h, w, g C_g + c)`` (dx, gather form),
* :func:`tap_products`: one lane's share of :math:`\sum_{b,u,v} \delta_{b,u,v,o}\,x_{b,h,w,gC_g+c}`
  (dweight), added over lanes by :func:`add_lanes` in shared memory.

Sums run in float64 registers. ``stride``, ``pad`` and ``dilation`` are pairs ``(along H, along W)``.
The depthwise kernels pass a group size of 1 as a literal, so the channel loops vanish when
the device functions are inlined.
"""
from numba import cuda

from refvit.kernels.cuda._window import reached_output


@cuda.jit(device=True)
def tap_sum(x, weight, b, u, v, o, first_channel, group_in, stride, pad, dilation):
    """Output ``(b, u, v, o)`` before the bias; its group's channels start at ``first_channel``."""
    height, width = x.shape[1], x.shape[2]
    total = 0.0
    for i in range(weight.shape[2]):
        h = u * stride[0] - pad[0] + i * dilation[0]
        if h < 0 or h >= height:
            continue
        for j in range(weight.shape[3]):
            w = v * stride[1] - pad[1] + j * dilation[1]
            if w < 0 or w >= width:
                continue
            for c in range(group_in):
                total += x[b, h, w, first_channel + c] * weight[o, c, i, j]
    return total


@cuda.jit(device=True)
def tap_gather(dout, weight, b, h, w, c, first_out, group_out, stride, pad, dilation):
    """dx at input ``(b, h, w)``, channel ``c`` of its group, whose outputs are ``first_out`` on."""
    out_h, out_w = dout.shape[1], dout.shape[2]
    total = 0.0
    for i in range(weight.shape[2]):
        u = reached_output(h, pad[0], i * dilation[0], stride[0], out_h)
        if u < 0:
            continue
        for j in range(weight.shape[3]):
            v = reached_output(w, pad[1], j * dilation[1], stride[1], out_w)
            if v < 0:
                continue
            for o in range(first_out, first_out + group_out):
                total += dout[b, u, v, o] * weight[o, c, i, j]
    return total


@cuda.jit(device=True)
def tap_products(dout, x, o, channel, i, j, lane, lanes, stride, pad, dilation):
    """The dweight products of tap ``(i, j)``, output channel ``o`` and input ``channel`` over the
    output pixels ``lane, lane + lanes, ...``."""
    batch, out_h, out_w = dout.shape[0], dout.shape[1], dout.shape[2]
    height, width = x.shape[1], x.shape[2]
    total = 0.0
    for pixel in range(lane, batch * out_h * out_w, lanes):
        v = pixel % out_w
        u = (pixel // out_w) % out_h
        b = pixel // (out_w * out_h)
        h = u * stride[0] - pad[0] + i * dilation[0]
        w = v * stride[1] - pad[1] + j * dilation[1]
        if 0 <= h < height and 0 <= w < width:
            total += dout[b, u, v, o] * x[b, h, w, channel]
    return total


@cuda.jit(device=True)
def add_lanes(lane_sums, lane, column, value):
    """Tree sum of ``value`` over the lanes (``lane_sums (lanes, columns)`` in shared memory, lanes a
    power of two); the total lands in ``lane_sums[0, column]``. Every thread of the block calls it."""
    lane_sums[lane, column] = value
    cuda.syncthreads()
    step = lane_sums.shape[0] // 2
    while step > 0:
        if lane < step:
            lane_sums[lane, column] += lane_sums[lane + step, column]
        cuda.syncthreads()
        step //= 2
