r"""Average pooling on the GPU, channels-last, padding counted as zeros (divisor ``kh*kw``).

* forward: one thread per output element; it adds the in-range inputs of its window.
* backward (gather): one thread per input element; it adds :math:`\delta/(k_h k_w)` of every
  output whose window covers it (:math:`u = (h + p_h - i)/s_h` whole and in range).

The kernels are shared with the max pool: :mod:`refvit.kernels.cuda._pool`.
"""
from refvit.kernels.cuda._device import any_device, empty, to_device, to_host_unless
from refvit.kernels.cuda._pool import pool_backward, pool_forward


def forward(x, window):
    on_device = any_device(x)
    (x,) = to_device(x)
    out = empty((x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3]), x.dtype)
    pool_forward(x, out, None, window)
    return to_host_unless(on_device, out)


def backward(dout, x_shape, window):
    on_device = any_device(dout)
    (dout,) = to_device(dout)
    dx = empty(x_shape, dout.dtype)
    pool_backward(dout, None, dx, window)
    return to_host_unless(on_device, dx)
