"""``Tensor``: a NumPy array that remembers which recorded op made it.

``Tensor(data, requires_grad=False)`` wraps ``data`` (float32 and float64 arrays are kept
as they are, without a copy; integers, bools, lists and Python numbers become float64).
A tensor made by a recorded op points at its tape node; ``backward`` sends a gradient
back through the tape (see :mod:`refvit.autograd.tape`) and leaf tensors that require a
gradient collect it in ``.grad``, summed over calls as in PyTorch.

The arithmetic sugar is backed by ops only: ``+`` is ``ops.add``, ``*`` is ``ops.mul``,
``-x`` and ``a - b`` multiply by ``-1``, ``x / c`` multiplies by ``1/c`` for a constant
``c``, ``x @ w`` is ``ops.linear(x, w.T)`` for a 2-D ``w``, ``sum``/``mean`` use ``ops.mean``.

Versions
    Every tensor has a version counter (``_version``, as in PyTorch) that goes up by one
    at each in-place change made through refvit: an augmented assignment to ``data``
    (``t.data -= step``, what the optimisers do) or :meth:`Tensor._bump_version`.
    Tensors that share an array (``detach``, ``Tensor(t)``, and ``reshape``, ``permute``,
    sliced ``getitem`` or ``split`` whenever they return a view) share one counter. The tape records
    the versions of the tensors an op's cache holds and refuses to run that op's
    backward once any of them has changed (see :mod:`refvit.autograd.tape`). Assigning
    a *new* array to ``data`` leaves the arrays already saved untouched, so it starts a
    fresh counter (at the same value) instead. Writing into the array itself
    (``t.data[...] = 0``, ``np.copyto(t.data, ...)``) cannot be seen.
"""
from __future__ import annotations

import numbers

import numpy as np

from refvit._validate import FLOAT_DTYPES, describe, is_device_array
from refvit.autograd import tape


def _as_float_array(data):
    if is_device_array(data):
        data = data.copy_to_host()
    array = np.asarray(data)
    if array.dtype.kind in "iub":
        return array.astype(np.float64)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"Tensor: 'data' must be a float32 or float64 array (or integers, bools, a list, a number); "
            f"got {describe(data) if isinstance(data, np.ndarray) else type(data).__name__ + ' of dtype ' + str(array.dtype)}"
        )
    return array


class _Version:
    """A version number that tensors sharing one array share."""

    __slots__ = ("value",)

    def __init__(self, value=0):
        self.value = value


class Tensor:
    """A NumPy array with an optional gradient and a link to the op that made it.

    Attributes: ``data`` (the array), ``grad`` (``None`` or an array of ``data``'s
    shape and dtype), ``requires_grad``, and read-only ``shape``, ``dtype``, ``ndim``,
    ``size``, ``is_leaf``, ``_version``.
    """

    __array_ufunc__ = None  # ``ndarray + Tensor`` defers to Tensor.__radd__ (recorded), not a NumPy loop

    def __init__(self, data, requires_grad=False):
        counter = None
        if isinstance(data, Tensor):
            source = data
            data = _as_float_array(source._data)
            if data is source._data:
                counter = source._version_counter  # same array: same counter, as a view in PyTorch
        else:
            data = _as_float_array(data)
        self._data = data
        self._version_counter = _Version() if counter is None else counter
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None
        self._output_index = 0

    @classmethod
    def _from_op(cls, array, node, index, counter=None):
        tensor = cls.__new__(cls)
        tensor._data = array
        tensor._version_counter = _Version() if counter is None else counter
        tensor.requires_grad = node is not None
        tensor.grad = None
        tensor._node = node
        tensor._output_index = index
        return tensor

    # ---- the array and its version
    @property
    def data(self):
        """The array. ``t.data op= x`` changes it in place and bumps ``_version``; assigning
        another array replaces it (arrays an op saved earlier keep their values)."""
        return self._data

    @data.setter
    def data(self, value):
        if value is self._data:  # ``t.data -= x``: NumPy changed the array in place, then assigns it back
            self._version_counter.value += 1
            return
        self._data = value
        self._version_counter = _Version(self._version_counter.value)

    @property
    def _version(self):
        """How many in-place changes this tensor's array has had through refvit."""
        return self._version_counter.value

    def _bump_version(self):
        """Record an in-place change of ``data`` made by writing into the array directly."""
        self._version_counter.value += 1

    # ---- array facts
    @property
    def shape(self):
        return self._data.shape  # a tuple: ``_data`` is always a NumPy array

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def size(self):
        return self._data.size

    @property
    def is_leaf(self):
        """True for a tensor made by the user, not by a recorded op."""
        return self._node is None

    @property
    def grad_fn(self):
        """Name of the recorded op that made this tensor, or ``None``."""
        return None if self._node is None else self._node.name

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        """Rows along the first axis, each recorded as ``getitem``."""
        return (self[i] for i in range(len(self)))

    def numpy(self):
        """The array itself (no copy, like PyTorch's ``.numpy()``)."""
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"Tensor.item: tensor must have one element; got shape {self.shape}")
        return self.data.item()

    def detach(self):
        """A new leaf tensor sharing ``data`` (and its version counter), with no history and no gradient."""
        return Tensor(self)

    def __repr__(self):
        extras = ""
        if self._node is not None:
            extras = f", grad_fn={self._node.name}"
        elif self.requires_grad:
            extras = ", requires_grad=True"
        body = np.array2string(self.data, prefix="Tensor(", threshold=20, edgeitems=2)
        return f"Tensor({body}, dtype={self.dtype}{extras})"

    # ---- gradients
    def backward(self, grad=None, retain_graph=False):
        """Back-propagate ``grad`` (d loss / d self; ones for a one-element tensor when omitted)."""
        if not self.requires_grad:
            raise RuntimeError(
                "Tensor.backward: this tensor does not require a gradient and has no recorded history "
                "(made from constants, or under no_grad)"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"Tensor.backward: 'grad' must be given for an output with more than one element; "
                    f"got None for shape {self.shape}"
                )
            grad = np.ones(self.shape, dtype=self.dtype)
        else:
            grad = _as_float_array(grad.data if isinstance(grad, Tensor) else grad)
            if grad.shape != self.shape:
                raise ValueError(f"Tensor.backward: 'grad' must have shape {self.shape}; got shape {grad.shape}")
            grad = grad.astype(self.dtype, copy=False)
        tape.run_backward(self, grad, retain_graph=retain_graph)

    def zero_grad(self):
        self.grad = None

    # ---- arithmetic sugar, all through ops
    def _constant(self, value):
        """A non-Tensor operand as an array; Python numbers take this tensor's dtype."""
        if isinstance(value, Tensor):
            return value
        if isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_)):
            return np.asarray(value, dtype=self.dtype)
        return _as_float_array(value)

    def __add__(self, other):
        from refvit import ops

        return tape.apply(ops.add, self, self._constant(other))

    def __radd__(self, other):
        from refvit import ops

        return tape.apply(ops.add, self._constant(other), self)

    def __mul__(self, other):
        from refvit import ops

        return tape.apply(ops.mul, self, self._constant(other))

    def __rmul__(self, other):
        from refvit import ops

        return tape.apply(ops.mul, self._constant(other), self)

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        other = self._constant(other)
        return self + (-other if isinstance(other, Tensor) else np.negative(other))

    def __rsub__(self, other):
        return (-self) + self._constant(other)

    def __truediv__(self, other):
        if isinstance(other, Tensor):
            raise TypeError(
                "Tensor: division by a Tensor needs a reciprocal op, which refvit.ops does not have; "
                f"got divisor Tensor of shape {other.shape}. Divide by a constant instead."
            )
        divisor = self._constant(other)
        return self * (1.0 / divisor).astype(divisor.dtype, copy=False)

    def __rtruediv__(self, other):
        raise TypeError(
            "Tensor: division by a Tensor needs a reciprocal op, which refvit.ops does not have; "
            f"got divisor Tensor of shape {self.shape}"
        )

    def __matmul__(self, other):
        from refvit import ops

        other = self._constant(other)
        if other.ndim != 2:
            raise ValueError(
                f"Tensor: '@' needs a 2-D right operand (it runs as linear(x, w.T)); got shape {tuple(other.shape)}"
            )
        weight = other.transpose(0, 1) if isinstance(other, Tensor) else np.ascontiguousarray(other.T)
        return tape.apply(ops.linear, self, weight)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis`` (an int, a tuple, or ``None`` for all axes) via ``ops.mean``."""
        from refvit import ops

        axis = tuple(range(self.ndim)) if axis is None else axis
        return tape.apply(ops.mean, self, axis, keepdims=keepdims)

    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis``: ``mean`` times the number of elements reduced."""
        mean = self.mean(axis, keepdims=keepdims)
        return mean * float(self.size // max(mean.size, 1))

    # ---- structural ops (hand-written forward/backward pairs in refvit.autograd.shape)
    def reshape(self, *shape):
        from refvit.autograd import functions

        return functions.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def permute(self, *axes):
        from refvit.autograd import functions

        return functions.permute(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)

    def transpose(self, axis0, axis1):
        from refvit.autograd import functions

        return functions.transpose(self, axis0, axis1)

    def flatten(self, start_axis=0, end_axis=-1):
        from refvit.autograd import functions

        return functions.flatten(self, start_axis, end_axis)

    def broadcast_to(self, shape):
        from refvit.autograd import functions

        return functions.broadcast_to(self, shape)

    expand = broadcast_to

    def __getitem__(self, index):
        from refvit.autograd import functions

        return functions.getitem(self, index)

