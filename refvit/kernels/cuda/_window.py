"""Index and window arithmetic shared by the CUDA kernels on channels-last maps (device functions)."""
from numba import cuda


@cuda.jit(device=True)
def reached_output(position, pad, offset, stride, out_size):
    """The output index whose window puts the tap at ``offset`` (``tap * dilation``) on input
    ``position``, or -1 when no output does (see :func:`refvit.kernels.cpu._window.reached_output`)."""
    reach = position + pad - offset
    if reach < 0 or reach % stride != 0:
        return -1
    output = reach // stride
    return output if output < out_size else -1


@cuda.jit(device=True)
def nhwc_position(index, height, width, channels):
    """``(b, h, w, c)`` of element ``index`` of a C-ordered ``(B, height, width, channels)`` array."""
    c = index % channels
    w = (index // channels) % width
    h = (index // (channels * width)) % height
    b = index // (channels * width * height)
    return b, h, w, c
