"""Broadcasting product on the GPU: one thread per output element.

Each thread decodes its output index once per input, through that input's broadcast strides
(:func:`refvit.kernels.cuda._reduce.broadcast_binary`, shared with ``add``).
The backward runs the same kernel on ``dout`` and the other input, then sums over the
broadcast axes with :func:`refvit.kernels.cuda._reduce.sum_to_shape`.
"""
from refvit.kernels.cuda._device import any_device, to_device, to_host_unless
from refvit.kernels.cuda._reduce import broadcast_binary, sum_to_shape


def _broadcast_product(a, b, out_shape):
    """``a * b`` broadcast to ``out_shape``, as a device array."""
    return broadcast_binary(a, b, out_shape, True)


def forward(a, b, out_shape):
    return to_host_unless(any_device(a, b), _broadcast_product(a, b, out_shape))


def backward(dout, a, b):
    """``da = sum_to(dout * b)``, ``db = sum_to(dout * a)``."""
    on_device = any_device(dout, a, b)
    out_shape = tuple(dout.shape)
    (dout,) = to_device(dout)
    da = sum_to_shape(_broadcast_product(dout, b, out_shape), tuple(a.shape))
    db = sum_to_shape(_broadcast_product(dout, a, out_shape), tuple(b.shape))
    return to_host_unless(on_device, da, db)
