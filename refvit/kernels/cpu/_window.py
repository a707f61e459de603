"""Window arithmetic shared by the CPU convolution and pooling kernels."""
from numba import njit


@njit(cache=True)
def reached_output(position, pad, offset, stride, out_size):
    """The output index whose window puts the tap at ``offset`` (``tap * dilation``) on input
    ``position``, or -1 when no output does: ``position + pad - offset`` must be a non-negative
    multiple of ``stride`` below ``out_size * stride``. The gather-form input gradients of
    convolutions and pools sum over the outputs this returns."""
    reach = position + pad - offset
    if reach < 0 or reach % stride != 0:
        return -1
    output = reach // stride
    return output if output < out_size else -1
