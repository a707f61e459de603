r"""Structural ops: they move, copy or pad values but compute nothing.

Each follows the op contract (``forward(..., backend=None) -> (out, cache)``,
``backward(dout, cache) -> tuple``, ``DIFFERENTIABLE``, ``example(rng)``) so the tape
and :func:`refvit.testing.gradcheck` treat them like the ops of :mod:`refvit.ops`.
They run in NumPy whatever the backend. Each backward is the adjoint of a linear map:

=================  =========================================  =====================================
op                 forward                                    backward
=================  =========================================  =====================================
``reshape``        same values, new shape                     reshape ``dout`` back
``permute``        :math:`y_{i_{p_0}\dots} = x_{i_0\dots}`    permute by the inverse permutation
``concatenate``    stack arrays along ``axis``                slice ``dout`` into the input pieces
``split``          cut ``x`` into pieces of ``sizes``         concatenate the pieces' gradients
``getitem``        ``x[index]``                               zeros, then ``dx[index] += dout``
``pad``            zeros around ``x``                         the centre of ``dout``
``broadcast_to``   repeat ``x`` along broadcast axes          sum ``dout`` over those axes
=================  =========================================  =====================================
"""
from __future__ import annotations

import numbers
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from refvit._validate import check_array, check_grad, check_int, check_same_dtype, describe, fail
from refvit.backend import BACKENDS


def _check_backend(op, backend):
    if backend is not None and backend not in BACKENDS:
        fail(op, "backend", "one of " + ", ".join(map(repr, BACKENDS)) + " or None", repr(backend))


def _as_shape(op, arg, shape):
    if type(shape) is tuple and all(type(s) is int for s in shape):
        return shape  # the common case, without the checks against the numbers ABCs
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, numbers.Integral) for s in shape):
        fail(op, arg, "a tuple of integers", describe(shape), TypeError)
    return tuple(int(s) for s in shape)


def _axis(op, x, axis, arg="axis"):
    return check_int(op, arg, axis, minimum=-x.ndim, maximum=x.ndim - 1) % x.ndim


def _make(name, forward, backward, differentiable, example):
    return SimpleNamespace(__name__=f"{__name__}.{name}", OP=name, forward=forward, backward=backward,
                           DIFFERENTIABLE=differentiable, example=example)


class Spec(NamedTuple):
    """Shape and dtype of an array (all ``check_grad`` looks at)."""
    shape: tuple
    dtype: np.dtype


class ShapeCache(NamedTuple):
    x: Spec  # the input's shape and dtype
    out: Spec  # the output's (for several outputs: the input's)
    option: object  # the op's option, normalised
    backend: object


def _cache(x, out, option, backend):
    out_spec = Spec(x.shape, x.dtype) if isinstance(out, tuple) else Spec(out.shape, out.dtype)
    return ShapeCache(Spec(x.shape, x.dtype), out_spec, option, backend)


# ---- reshape
def _reshape_forward(x, shape, backend=None):
    """``x (...)`` -> same values in ``shape`` (one entry may be ``-1``)."""
    _check_backend("reshape", backend)
    x = check_array("reshape", "x", x, "numpy")
    shape = _as_shape("reshape", "shape", shape)
    try:
        out = x.reshape(shape)  # the method: np.reshape adds a Python wrapper around it
    except ValueError:
        fail("reshape", "shape", f"compatible with the {x.size} elements of 'x' {x.shape}", shape)
    return out, _cache(x, out, shape, backend)


def _reshape_backward(dout, cache):
    dout = check_grad("reshape", dout, cache.out)
    return (dout.reshape(cache.x.shape) if type(dout) is np.ndarray else np.reshape(dout, cache.x.shape),)


reshape = _make("reshape", _reshape_forward, _reshape_backward, ("x",),
                lambda rng: ((rng.standard_normal((2, 3, 4)), (4, -1)), {}))


# ---- permute
def _permute_forward(x, axes, backend=None):
    """``x`` with its axes reordered: ``out.shape[i] == x.shape[axes[i]]``."""
    _check_backend("permute", backend)
    x = check_array("permute", "x", x, "numpy")
    axes = _as_shape("permute", "axes", axes)
    if len(axes) != x.ndim or any(not -x.ndim <= a < x.ndim for a in axes) or sorted(
            a % x.ndim for a in axes) != list(range(x.ndim)):
        fail("permute", "axes", f"a permutation of the {x.ndim} axes of 'x'", axes)
    axes = tuple(a % x.ndim for a in axes)
    out = x.transpose(axes)
    return out, _cache(x, out, axes, backend)


def _permute_backward(dout, cache):
    dout = check_grad("permute", dout, cache.out)
    inverse = [0] * len(cache.option)  # the inverse permutation (np.argsort of it, without an array)
    for i, axis in enumerate(cache.option):
        inverse[axis] = i
    return (dout.transpose(inverse) if type(dout) is np.ndarray else np.transpose(dout, inverse),)


permute = _make("permute", _permute_forward, _permute_backward, ("x",),
                lambda rng: ((rng.standard_normal((2, 3, 4)), (2, 0, 1)), {}))


# ---- concatenate
def _concatenate_forward(arrays, axis=0, backend=None):
    """``arrays`` (a sequence of arrays equal in shape except along ``axis``) joined along ``axis``."""
    _check_backend("concatenate", backend)
    if not isinstance(arrays, (list, tuple)) or len(arrays) == 0:
        fail("concatenate", "arrays", "a non-empty sequence of arrays", describe(arrays), TypeError)
    arrays = tuple(check_array("concatenate", f"arrays[{i}]", a, "numpy") for i, a in enumerate(arrays))
    check_same_dtype("concatenate", **{f"arrays[{i}]": a for i, a in enumerate(arrays)})
    first = arrays[0]
    axis = _axis("concatenate", first, axis)
    for i, a in enumerate(arrays):
        if a.ndim != first.ndim or a.shape[:axis] + a.shape[axis + 1:] != first.shape[:axis] + first.shape[axis + 1:]:
            fail("concatenate", f"arrays[{i}]", f"of shape {first.shape} except along axis {axis}", f"shape {a.shape}")
    sizes = tuple(a.shape[axis] for a in arrays)
    out = np.concatenate(arrays, axis=axis)
    return out, _cache(first, out, (axis, sizes), backend)


def _concatenate_backward(dout, cache):
    axis, sizes = cache.option
    dout = check_grad("concatenate", dout, cache.out)
    return (_pieces(dout, sizes, axis),)


concatenate = _make("concatenate", _concatenate_forward, _concatenate_backward, ("arrays",),
                    lambda rng: (((rng.standard_normal((2, 3)), rng.standard_normal((2, 1))),), {"axis": 1}))


# ---- split
def _split_forward(x, sizes, axis=0, backend=None):
    """``x`` cut along ``axis`` into consecutive pieces of ``sizes`` (which sum to that axis' length)."""
    _check_backend("split", backend)
    x = check_array("split", "x", x, "numpy")
    axis = _axis("split", x, axis)
    sizes = _as_shape("split", "sizes", sizes)
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[axis]:
        fail("split", "sizes", f"non-negative sizes summing to x.shape[{axis}] = {x.shape[axis]}", sizes)
    pieces = _pieces(x, sizes, axis)
    return pieces, _cache(x, pieces, (axis, sizes), backend)


def _pieces(x, sizes, axis):
    """Views of ``x`` cut along ``axis`` into consecutive pieces of ``sizes``: what ``np.split`` gives at
    the cumulative sums, by plain slicing (``np.split`` spends tens of microseconds in Python per call)."""
    before = (slice(None),) * axis
    pieces, start = [], 0
    for size in sizes:
        pieces.append(x[before + (slice(start, start + size),)])
        start += size
    return tuple(pieces)


def _split_backward(douts, cache):
    axis, sizes = cache.option
    if not isinstance(douts, (list, tuple)) or len(douts) != len(sizes):
        fail("split", "dout", f"a tuple of {len(sizes)} gradients, one per piece", describe(douts), TypeError)
    pieces = [Spec(cache.x.shape[:axis] + (size,) + cache.x.shape[axis + 1:], cache.x.dtype) for size in sizes]
    douts = [check_grad("split", d, p, name=f"dout[{i}]") for i, (d, p) in enumerate(zip(douts, pieces))]
    return (np.concatenate(douts, axis=axis),)


split = _make("split", _split_forward, _split_backward, ("x",),
              lambda rng: ((rng.standard_normal((5, 3)), (2, 3)), {"axis": 0}))


# ---- getitem
def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, numbers.Integral)) for p in parts)


def _getitem_forward(x, index, backend=None):
    """``x[index]`` for any NumPy index (basic slicing gives a view)."""
    _check_backend("getitem", backend)
    x = check_array("getitem", "x", x, "numpy")
    try:
        out = x[index]
    except (IndexError, TypeError) as error:
        fail("getitem", "index", f"a valid index for 'x' of shape {x.shape} ({error})", repr(index))
    return out, _cache(x, out, index, backend)


def _getitem_backward(dout, cache):
    dout = check_grad("getitem", dout, cache.out)
    dx = np.zeros(cache.x.shape, dtype=cache.x.dtype)
    if _is_basic(cache.option):
        dx[cache.option] = dout  # basic indexing touches each element at most once
    else:
        np.add.at(dx, cache.option, dout)  # repeated integer indices accumulate
    return (dx,)


getitem = _make("getitem", _getitem_forward, _getitem_backward, ("x",),
                lambda rng: ((rng.standard_normal((4, 5)), (slice(1, None, 2), slice(None, -1))), {}))


# ---- pad
def _pad_forward(x, pad_width, backend=None):
    """``x`` with ``pad_width[i] = (before, after)`` zeros added on axis ``i`` (one pair per axis)."""
    _check_backend("pad", backend)
    x = check_array("pad", "x", x, "numpy")
    pairs = tuple(tuple(p) if isinstance(p, (tuple, list)) else p for p in pad_width) \
        if isinstance(pad_width, (tuple, list)) else pad_width
    if (not isinstance(pairs, tuple) or len(pairs) != x.ndim or any(
            not isinstance(p, tuple) or len(p) != 2 or not all(isinstance(v, numbers.Integral) and v >= 0 for v in p)
            for p in pairs)):
        fail("pad", "pad_width", f"{x.ndim} pairs (before, after) of non-negative integers, one per axis of 'x'",
             describe(pad_width))
    pairs = tuple((int(b), int(a)) for b, a in pairs)
    # zeros and one copy into the centre: the values of np.pad's constant mode, without its passes in Python
    out = np.zeros(tuple(n + b + a for n, (b, a) in zip(x.shape, pairs)), dtype=x.dtype)
    out[tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, pairs))] = x
    return out, _cache(x, out, pairs, backend)


def _pad_backward(dout, cache):
    dout = check_grad("pad", dout, cache.out)
    centre = tuple(slice(b, b + n) for n, (b, _) in zip(cache.x.shape, cache.option))
    return (dout[centre],)


pad = _make("pad", _pad_forward, _pad_backward, ("x",),
            lambda rng: ((rng.standard_normal((2, 3, 4)), ((0, 0), (1, 2), (0, 3))), {}))


# ---- broadcast_to
def _broadcast_to_forward(x, shape, backend=None):
    """``x`` repeated along new leading axes and along its size-1 axes to ``shape`` (a copy)."""
    _check_backend("broadcast_to", backend)
    x = check_array("broadcast_to", "x", x, "numpy")
    shape = _as_shape("broadcast_to", "shape", shape)
    try:
        out = np.array(np.broadcast_to(x, shape))
    except ValueError:
        fail("broadcast_to", "shape", f"a shape that 'x' {x.shape} broadcasts to", shape)
    return out, _cache(x, out, shape, backend)


def _broadcast_to_backward(dout, cache):
    dout = check_grad("broadcast_to", dout, cache.out)
    x_shape = cache.x.shape
    leading = dout.ndim - len(x_shape)
    repeated = tuple(range(leading)) + tuple(
        leading + i for i, n in enumerate(x_shape) if n == 1 and dout.shape[leading + i] != 1)
    return (np.sum(dout, axis=repeated).reshape(x_shape),)


broadcast_to = _make("broadcast_to", _broadcast_to_forward, _broadcast_to_backward, ("x",),
                     lambda rng: ((rng.standard_normal((3, 1)), (2, 3, 4)), {}))

STRUCTURAL_OPS = {op.OP: op for op in (reshape, permute, concatenate, split, getitem, pad, broadcast_to)}
