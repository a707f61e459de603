"""Broadcasting sum on the GPU: one thread per output element; the backward sums over broadcast axes.

Each thread decodes its output index once per input, through that input's broadcast strides
(0 along axes it is broadcast over): :func:`refvit.kernels.cuda._reduce.broadcast_binary`, shared
with ``mul``. The backward is :func:`refvit.kernels.cuda._reduce.sum_to_shape`.
"""
from refvit.kernels.cuda._device import any_device, to_host_unless
from refvit.kernels.cuda._reduce import broadcast_binary, sum_to_shape


def forward(a, b, out_shape):
    return to_host_unless(any_device(a, b), broadcast_binary(a, b, out_shape, False))


def backward(dout, a_shape, b_shape):
    on_device = any_device(dout)
    return to_host_unless(on_device, sum_to_shape(dout, a_shape), sum_to_shape(dout, b_shape))
