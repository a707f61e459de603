"""The entry shape of the elementwise ``cpu`` kernels: one parallel pass over flattened arrays.

An elementwise kernel ``kernel(a, b, ..., result)`` takes 1-D arrays of one length and writes
``result``; :func:`map_flat` makes its inputs C-contiguous, flattens them and returns the result
in the shape and dtype of the last input (the forward's ``x``, or the array the backward reads
beside ``dout``).
"""
import numpy as np


def map_flat(kernel, *arrays):
    """``kernel(*flat_arrays, flat_result)`` -> ``result``, shaped and typed like ``arrays[-1]``."""
    arrays = [np.asarray(a, order="C") for a in arrays]
    result = np.empty_like(arrays[-1])
    kernel(*(a.reshape(-1) for a in arrays), result.reshape(-1))
    return result
