"""The ops on ``Tensor``s, recorded on the tape: ``from refvit import functional as F``.

Every function has the signature of its op's ``forward`` (SPEC section 4) and returns a
``Tensor`` (a tuple of them for an op with several outputs). Arguments may be
``Tensor``s or NumPy arrays; arrays are constants. ``backend=`` picks the op's backend
for this call (``None``: the current default, see :func:`refvit.use_backend`).

Any op module of :mod:`refvit.ops` that has no function written out here is reached the
same way through the module ``__getattr__``: ``F.na2d(q, k, v, 7)`` is
``apply(ops.na2d, q, k, v, 7)``. The structural ops of :mod:`refvit.autograd.functions`
(``reshape``, ``permute``, ``transpose``, ``concatenate``, ``stack``, ``split``, ``chunk``,
``getitem``, ``pad``, ``broadcast_to``, ...) are here too.
"""
from __future__ import annotations

from refvit import ops
from refvit.autograd.functions import (  # noqa: F401  (re-exported)
    broadcast_to, cat, chunk, concatenate, expand, flatten, getitem, pad, permute, reshape, split, squeeze,
    stack, transpose, unsqueeze,
)
from refvit.autograd.tape import apply


def linear(x, weight, bias=None, backend=None):
    """``x (..., in) @ weight (out, in)^T + bias (out,)`` -> ``(..., out)``."""
    return apply(ops.linear, x, weight, bias, backend=backend)


def layer_norm(x, weight, bias, eps=1e-5, backend=None):
    """Normalise over the last axis, then ``* weight + bias`` (both ``(C,)``)."""
    return apply(ops.layer_norm, x, weight, bias, eps=eps, backend=backend)


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, backend=None):
    """Normalise over all axes but the last (``x (..., C)``); updates the running stats in place when training."""
    return apply(ops.batch_norm, x, weight, bias, running_mean, running_var, training, momentum=momentum,
                 eps=eps, backend=backend)


def gelu(x, approximate="none", backend=None):
    """GELU, exact (erf) or ``approximate="tanh"``."""
    return apply(ops.gelu, x, approximate=approximate, backend=backend)


def relu(x, backend=None):
    return apply(ops.relu, x, backend=backend)


def silu(x, backend=None):
    return apply(ops.silu, x, backend=backend)


def sigmoid(x, backend=None):
    return apply(ops.sigmoid, x, backend=backend)


def tanh(x, backend=None):
    return apply(ops.tanh, x, backend=backend)


def softmax(x, axis=-1, backend=None):
    """Softmax along ``axis``."""
    return apply(ops.softmax, x, axis=axis, backend=backend)


def add(a, b, backend=None):
    """``a + b`` with NumPy broadcasting."""
    return apply(ops.add, a, b, backend=backend)


def mul(a, b, backend=None):
    """``a * b`` with NumPy broadcasting."""
    return apply(ops.mul, a, b, backend=backend)


def mean(x, axis, keepdims=False, backend=None):
    """Mean over ``axis`` (an int or a tuple of ints)."""
    return apply(ops.mean, x, axis, keepdims=keepdims, backend=backend)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in/groups, kh, kw)`` -> ``(B, H', W', C_out)``."""
    return apply(ops.conv2d, x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 backend=backend)


def avg_pool2d(x, kernel_size, stride=None, padding=0, backend=None):
    """Average pooling of ``x (B, H, W, C)``, zero padding counted (``count_include_pad=True``)."""
    return apply(ops.avg_pool2d, x, kernel_size, stride=stride, padding=padding, backend=backend)


def max_pool2d(x, kernel_size, stride=None, padding=0, backend=None):
    """Max pooling of ``x (B, H, W, C)``."""
    return apply(ops.max_pool2d, x, kernel_size, stride=stride, padding=padding, backend=backend)


def attention(q, k, v, bias=None, scale=None, backend=None):
    """``softmax(scale * q k^T + bias) v`` with ``q (B, h, Nq, d)``, ``k, v (B, h, Nk, d)``."""
    return apply(ops.attention, q, k, v, bias=bias, scale=scale, backend=backend)


def channel_shuffle(x, groups, backend=None):
    """Channel ``j*groups + i`` of the output is channel ``i*(C/groups) + j`` of ``x (..., C)``."""
    return apply(ops.channel_shuffle, x, groups, backend=backend)


def _op_function(name):
    op = getattr(ops, name)

    def call(*args, **kwargs):
        return apply(op, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``apply(refvit.ops.{name}, ...)``: {name}'s forward on Tensors, recorded on the tape.\n\n" + (
        op.__doc__ or "")
    return call


def __getattr__(name):
    if name.startswith("_") or name not in ops.list_ops():
        raise AttributeError(f"module 'refvit.functional' has no function {name!r}")
    function = _op_function(name)
    globals()[name] = function
    return function


def __dir__():
    return sorted(set(globals()) | set(ops.list_ops()))
