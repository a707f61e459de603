r"""Max pooling on the GPU, channels-last, with the index of each maximum kept for backward.

* forward: one thread per output element; it scans its window row by row from :math:`-\infty`
  with the first in-range input selected, and takes an input that is strictly larger or the
  first NaN (first maximum wins). ``selected`` stores ``h*W + w``.
* backward (gather): one thread per input element; it adds :math:`\delta` of every output whose
  window covers it and whose ``selected`` names it.

The kernels are shared with the average pool: :mod:`refvit.kernels.cuda._pool`.
"""
import numpy as np

from refvit.kernels.cuda._device import any_device, empty, to_device, to_host_unless
from refvit.kernels.cuda._pool import pool_backward, pool_forward


def forward(x, window):
    on_device = any_device(x)
    (x,) = to_device(x)
    shape = (x.shape[0], *window.output_size(x.shape[1], x.shape[2]), x.shape[3])
    out = empty(shape, x.dtype)
    selected = empty(shape, np.int64)
    pool_forward(x, out, selected, window)
    return to_host_unless(on_device, out, selected)


def backward(dout, x_shape, selected, window):
    on_device = any_device(dout)
    dout, selected = to_device(dout, selected)
    dx = empty(x_shape, dout.dtype)
    pool_backward(dout, selected, dx, window)
    return to_host_unless(on_device, dx)
