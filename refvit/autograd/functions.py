"""The structural ops on ``Tensor``s, recorded on the tape, with PyTorch-like helpers.

Each function here is one call of an op of :mod:`refvit.autograd.shape` through
:func:`refvit.autograd.tape.apply` (``transpose``, ``flatten``, ``unsqueeze``,
``squeeze``, ``stack`` and ``chunk`` only work out the arguments of one of them).
Arguments may be ``Tensor``s or NumPy arrays (constants).
"""
from __future__ import annotations

import numbers

import numpy as np

from refvit.autograd import shape as _shape
from refvit.autograd.tape import apply


def _shape_of(x):
    return tuple(np.shape(x.data if hasattr(x, "requires_grad") else x))


def reshape(x, shape):
    """``x`` with the same values in ``shape`` (one entry may be ``-1``)."""
    return apply(_shape.reshape, x, shape)


def permute(x, axes):
    """``x`` with axes reordered: ``out.shape[i] == x.shape[axes[i]]``."""
    return apply(_shape.permute, x, axes)


def transpose(x, axis0, axis1):
    """``x`` with two axes swapped."""
    ndim = len(_shape_of(x))
    axes = list(range(ndim))
    if not (-ndim <= axis0 < ndim and -ndim <= axis1 < ndim):
        raise ValueError(f"transpose: 'axis0, axis1' must be axes of a {ndim}-D array; got {axis0}, {axis1}")
    axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
    return permute(x, tuple(axes))


def flatten(x, start_axis=0, end_axis=-1):
    """``x`` with axes ``start_axis..end_axis`` (inclusive) merged into one."""
    shape = _shape_of(x)
    ndim = max(len(shape), 1)
    start, end = start_axis % ndim, end_axis % ndim
    if start > end:
        raise ValueError(f"flatten: 'start_axis' must not come after 'end_axis'; got {start_axis}, {end_axis}")
    return reshape(x, shape[:start] + (-1,) + shape[end + 1:])


def unsqueeze(x, axis):
    """``x`` with a new axis of length 1 at ``axis``."""
    shape = _shape_of(x)
    axis = axis % (len(shape) + 1)
    return reshape(x, shape[:axis] + (1,) + shape[axis:])


def squeeze(x, axis):
    """``x`` without its axis ``axis``, which must have length 1."""
    shape = _shape_of(x)
    axis = axis % len(shape)
    if shape[axis] != 1:
        raise ValueError(f"squeeze: 'axis' must name an axis of length 1; got axis {axis} of shape {shape}")
    return reshape(x, shape[:axis] + shape[axis + 1:])


def broadcast_to(x, shape):
    """``x`` repeated to ``shape`` (NumPy broadcasting); the gradient sums the repeats."""
    return apply(_shape.broadcast_to, x, shape)


expand = broadcast_to


def getitem(x, index):
    """``x[index]``; the gradient scatters ``dout`` back into zeros."""
    return apply(_shape.getitem, x, index)


def concatenate(tensors, axis=0):
    """``tensors`` joined along ``axis``."""
    return apply(_shape.concatenate, tuple(tensors), axis)


cat = concatenate


def stack(tensors, axis=0):
    """``tensors`` (all of one shape) joined along a new axis ``axis``."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("stack: 'tensors' must be a non-empty sequence; got an empty one")
    return concatenate([unsqueeze(t, axis % (len(_shape_of(tensors[0])) + 1)) for t in tensors], axis)


def split(x, split_size_or_sections, axis=0):
    """PyTorch's ``split``: an int is the length of each piece (the last may be shorter);
    a sequence gives the length of every piece. Returns a tuple of ``Tensor``s."""
    length = _shape_of(x)[axis]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size < 1:
            raise ValueError(f"split: 'split_size_or_sections' must be a positive integer; got {size}")
        sizes = [size] * (length // size) + ([length % size] if length % size else [])
    else:
        sizes = list(split_size_or_sections)
    return apply(_shape.split, x, tuple(sizes), axis)


def chunk(x, chunks, axis=0):
    """PyTorch's ``chunk``: pieces of length ``ceil(n / chunks)`` (fewer pieces when they run out)."""
    if not isinstance(chunks, numbers.Integral) or chunks < 1:
        raise ValueError(f"chunk: 'chunks' must be a positive integer; got {chunks!r}")
    length = _shape_of(x)[axis]
    return split(x, max(-(-length // int(chunks)), 1), axis)


def pad(x, pad_width):
    """``x`` with ``pad_width[i] = (before, after)`` zeros on axis ``i`` (one pair per axis)."""
    return apply(_shape.pad, x, pad_width)
