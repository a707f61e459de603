"""Moving arrays to and from the device, and launch sizes.

The ``cuda`` backend accepts NumPy arrays or device arrays and answers in kind:
device arrays in, device arrays out; NumPy in, NumPy out. Kernel modules use::

    on_device = any_device(x, w)
    x, w = to_device(x, w)
    out = empty(shape, x.dtype)
    kernel[grid_1d(out.size)](x, w, out)
    return to_host_unless(on_device, out)

Elementwise ops write only their math, as device functions, and run them through
:func:`map_kernel` / :func:`map2_kernel` and :func:`elementwise`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba import config as _numba_config

from refvit._validate import is_device_array

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)

# The simulator runs one Python thread per CUDA thread: keep blocks small there.
THREADS_1D = 32 if SIMULATOR else 256
THREADS_2D = (4, 4) if SIMULATOR else (16, 16)


def any_device(*arrays) -> bool:
    return any(a is not None and is_device_array(a) for a in arrays)


def to_device(*arrays):
    """Device copies of NumPy arrays (made C-contiguous); device arrays and None pass through."""
    out = []
    for a in arrays:
        if a is None or is_device_array(a):
            out.append(a)
        else:
            out.append(cuda.to_device(np.asarray(a, order="C")))
    return tuple(out)


def empty(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def zeros(shape, dtype):
    a = empty(shape, dtype)
    fill(a, 0.0)
    return a


def to_host_unless(on_device: bool, *arrays):
    """Return the arrays as device arrays if ``on_device``, else as NumPy arrays."""
    if on_device:
        result = arrays
    else:
        result = tuple(None if a is None else a.copy_to_host() for a in arrays)
    return result[0] if len(result) == 1 else result


def elementwise(kernel, inputs, *options):
    """Run ``kernel(*flat_inputs, flat_out, *options)`` with one thread per element.

    The output has the shape and dtype of ``inputs[0]``; device arrays in give a device array
    out, NumPy in gives NumPy out. The shape is read before the copy to the device, which
    turns a 0-d array into shape ``(1,)``.
    """
    on_device = any_device(*inputs)
    shape = tuple(inputs[0].shape)
    arrays = to_device(*inputs)
    out = empty(shape, arrays[0].dtype)
    flat = [a.reshape(a.size) for a in arrays]
    kernel[grid_1d(out.size)](*flat, out.reshape(out.size), *options)
    return to_host_unless(on_device, out)


def as_rows(a):
    """``a (..., C)`` seen as ``(rows, C)`` (a reshape of a contiguous device array)."""
    shape = tuple(a.shape)
    return a.reshape(math.prod(shape[:-1]), shape[-1])


def param_or_constant(param, channels, dtype, value):
    """An affine parameter on the device, or ``(channels,)`` copies of ``value`` when it is None."""
    if param is None:
        return cuda.to_device(np.full(channels, value, dtype=dtype))
    (param,) = to_device(param)
    return param


def map_kernel(function):
    """A kernel ``(x, out)`` with one thread per element: ``out[i] = function(x[i])`` (``function`` a
    device function; the kernel is made once, at import of the op's module)."""
    @cuda.jit
    def kernel(x, out):
        i = cuda.grid(1)
        if i < x.size:
            out[i] = function(x[i])
    return kernel


def map2_kernel(function):
    """A kernel ``(a, b, out)`` with one thread per element: ``out[i] = function(a[i], b[i])``."""
    @cuda.jit
    def kernel(a, b, out):
        i = cuda.grid(1)
        if i < a.size:
            out[i] = function(a[i], b[i])
    return kernel


def grid_1d(n: int):
    """(blocks, threads) for ``n`` independent work items."""
    threads = THREADS_1D
    return (max(1, (int(n) + threads - 1) // threads), threads)


@cuda.jit
def _fill_kernel(flat, value):
    i = cuda.grid(1)
    if i < flat.size:
        flat[i] = value


def fill(a, value):
    flat = a.reshape(a.size)
    _fill_kernel[grid_1d(a.size)](flat, value)
    return a
