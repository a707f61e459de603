r"""Average pooling on the GPU, channels-last, padding counted as zeros (divisor ``kh*kw``).

* forward: one thread per output element; it adds the in-range inputs of its window.
* backward (gather): one thread per input element; it adds :math:`\delta/(k_h k_w)` of every
  output whose window covers it (:math:`u = (h + p_h - i)/s_h` whole and in range).
"""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda._window import nhwc_position, reached_output


@cuda.jit
def _forward_kernel(x, out, kh, kw, stride_h, stride_w, pad_h, pad_w):
    index = cuda.grid(1)
    if index >= out.size:
        return
    batch, out_h, out_w, channels = out.shape
    height, width = x.shape[1], x.shape[2]
    b, u, v, c = nhwc_position(index, out_h, out_w, channels)
    total = 0.0
    for i in range(kh):
        h = u * stride_h - pad_h + i
        if h < 0 or h >= height:
            continue
        for j in range(kw):
            w = v * stride_w - pad_w + j
            if 0 <= w < width:
                total += x[b, h, w, c]
    out[b, u, v, c] = total / (kh * kw)


@cuda.jit
def _backward_kernel(dout, dx, kh, kw, stride_h, stride_w, pad_h, pad_w):
    index = cuda.grid(1)
    if index >= dx.size:
        return
    batch, height, width, channels = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    b, h, w, c = nhwc_position(index, height, width, channels)
    total = 0.0
    for i in range(kh):
        u = reached_output(h, pad_h, i, stride_h, out_h)
        if u < 0:
            continue
        for j in range(kw):
            v = reached_output(w, pad_w, j, stride_w, out_w)
            if v >= 0:
                total += dout[b, u, v, c]
    dx[b, h, w, c] = total / (kh * kw)


def _window_args(window):
    (kh, kw), (stride_h, stride_w), (pad_h, pad_w) = window.kernel, window.stride, window.padding
    return kh, kw, stride_h, stride_w, pad_h, pad_w


def forward(x, window):
    on_device = any_device(x)
    (x,) = to_device(x)
    out = empty((x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3]), x.dtype)
    _forward_kernel[grid_1d(out.size)](x, out, *_window_args(window))
    return to_host_unless(on_device, out)


def backward(dout, x_shape, window):
    on_device = any_device(dout)
    (dout,) = to_device(dout)
    dx = empty(x_shape, dout.dtype)
    _backward_kernel[grid_1d(dx.size)](dout, dx, *_window_args(window))
    return to_host_unless(on_device, dx)
