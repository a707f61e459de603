"""Argument checks made once, at the boundary of every op.

Every error names the op, the argument, what was expected and what was given::

    na2d: 'kernel_size' must be an odd integer >= 1; got 4

Type problems (not an array, not a float dtype, mixed dtypes) raise ``TypeError``;
value problems (rank, shape, range) raise ``ValueError``.
"""
from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def fail(op, arg, expected, given, error=ValueError):
    raise error(f"{op}: '{arg}' must be {expected}; got {given}")


def is_device_array(a) -> bool:
    """True for ``numba.cuda`` device arrays (real or simulated)."""
    if type(a) is np.ndarray:  # the common case, without the isinstance and attribute lookups
        return False
    return not isinstance(a, np.ndarray) and (
        hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host")
    )


def describe(a) -> str:
    if a is None:
        return "None"
    if isinstance(a, np.ndarray) or is_device_array(a):
        kind = "device array" if is_device_array(a) else "array"
        return f"{kind} of shape {tuple(a.shape)} and dtype {a.dtype}"
    return f"{type(a).__name__} {a!r}"


def check_array(op, arg, a, backend, ndim=None, min_ndim=None):
    """Check that ``a`` is a float32/float64 array the backend accepts; return it.

    ``numpy`` and ``cpu`` take NumPy arrays (lists are converted); ``cuda`` also
    takes device arrays. Integer, bool and complex arrays are a ``TypeError``.
    """
    if type(a) is np.ndarray and a.dtype in FLOAT_DTYPES and (ndim is None or a.ndim == ndim) and (
            min_ndim is None or a.ndim >= min_ndim):
        return a  # the common case, answered before the checks that explain a refusal
    if is_device_array(a):
        if backend != "cuda":
            fail(op, arg, f"a NumPy array for backend {backend!r}", describe(a), TypeError)
    elif isinstance(a, (list, tuple, numbers.Number)):
        a = np.asarray(a)
        if a.dtype.kind in "iub":
            a = a.astype(np.float64)
    elif not isinstance(a, np.ndarray):
        fail(op, arg, "a NumPy array", describe(a), TypeError)
    if np.dtype(a.dtype) not in FLOAT_DTYPES:
        fail(op, arg, "a float32 or float64 array", describe(a), TypeError)
    if ndim is not None and a.ndim != ndim:
        fail(op, arg, f"a {ndim}-D array", f"{a.ndim}-D shape {tuple(a.shape)}")
    if min_ndim is not None and a.ndim < min_ndim:
        fail(op, arg, f"an array of at least {min_ndim} dimensions", f"shape {tuple(a.shape)}")
    return a


def check_optional_array(op, arg, a, backend, ndim=None):
    return None if a is None else check_array(op, arg, a, backend, ndim=ndim)


def check_same_dtype(op, **arrays):
    """All given (non-None) arrays share one dtype; mixed dtypes are a ``TypeError``."""
    common = None
    for a in arrays.values():  # the common case: one dtype, found without building sets
        if a is not None:
            if common is None:
                common = a.dtype
            elif a.dtype != common:
                break
    else:
        return None if common is None else np.dtype(common)
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {np.dtype(a.dtype) for a in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name}={np.dtype(a.dtype)}" for name, a in present.items())
        first = next(iter(present))
        fail(op, ", ".join(present), f"of one dtype (like '{first}')", listing, TypeError)
    return dtypes.pop() if dtypes else None


def check_shape(op, arg, a, expected):
    """``expected`` is a tuple of ints or ``None`` (any size)."""
    shape = a.shape
    if len(shape) == len(expected):  # the common case, without building the generator of ``all``
        for e, s in zip(expected, shape):
            if e is not None and e != s:
                break
        else:
            return
    shape = tuple(shape)
    if len(shape) != len(expected) or not all(e is None or e == s for e, s in zip(expected, shape)):
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        fail(op, arg, f"of shape {want}", f"shape {shape}")


def check_int(op, arg, value, minimum=None, maximum=None, odd=False):
    if type(value) is int and (minimum is None or value >= minimum) and (maximum is None or value <= maximum) and (
            not odd or value % 2):
        return value  # the common case, before the checks against the numbers ABCs that explain a refusal
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,)):
        fail(op, arg, "an integer", describe(value), TypeError)
    value = int(value)
    wants = []
    if odd:
        wants.append("odd")
    bound = ""
    if minimum is not None:
        bound += f" >= {minimum}"
    if maximum is not None:
        bound += f" <= {maximum}" if not bound else f" and <= {maximum}"
    if (odd and value % 2 == 0) or (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        fail(op, arg, f"an {' '.join(wants + ['integer'])}{bound}", value)
    return value


def as_tuple(op, arg, value, n, **int_checks):
    """An int or a sequence of ``n`` ints -> tuple of ``n`` checked ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            fail(op, arg, f"an integer or a sequence of {n} integers", describe(value))
        return tuple(check_int(op, arg, v, **int_checks) for v in value)
    return (check_int(op, arg, value, **int_checks),) * n


def as_bool_tuple(op, arg, value, n):
    if isinstance(value, (tuple, list)):
        if len(value) != n or not all(isinstance(v, (bool, np.bool_)) for v in value):
            fail(op, arg, f"a bool or a sequence of {n} bools", describe(value), TypeError)
        return tuple(bool(v) for v in value)
    if not isinstance(value, (bool, np.bool_)):
        fail(op, arg, "a bool", describe(value), TypeError)
    return (bool(value),) * n


def check_choice(op, arg, value, choices):
    if value not in choices:
        fail(op, arg, "one of " + ", ".join(map(repr, choices)), repr(value))
    return value


def check_scale(op, scale, head_dim):
    """``None`` -> ``head_dim ** -0.5``; an explicit number (``0.0`` included) is kept."""
    if scale is None:
        return float(head_dim) ** -0.5
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        fail(op, "scale", "a real number or None", describe(scale), TypeError)
    return float(scale)


def check_grad(op, dout, like, name="dout"):
    """The upstream gradient has the output's shape and dtype."""
    if type(dout) is np.ndarray and dout.shape == like.shape and dout.dtype == like.dtype:
        return dout  # the common case, answered before the checks that explain a refusal
    if dout is None:
        fail(op, name, f"an array of shape {tuple(like.shape)}", "None", TypeError)
    if not (isinstance(dout, np.ndarray) or is_device_array(dout)):
        dout = np.asarray(dout)
    if tuple(dout.shape) != tuple(like.shape):
        fail(op, name, f"of the output's shape {tuple(like.shape)}", f"shape {tuple(dout.shape)}")
    if np.dtype(dout.dtype) != np.dtype(like.dtype):
        fail(op, name, f"of the output's dtype {np.dtype(like.dtype)}", f"dtype {dout.dtype}", TypeError)
    return dout


# ---------------------------------------------------------------- modules and models
# Constructor arguments of ``refvit.nn`` modules and ``refvit.models`` models are checked with the
# helpers above and below, so a wrong value is refused when the module is built, naming the module
# and the argument, rather than truncated (``int(2.5)``) or reported later by NumPy or an op.

MAX_NUM_CLASSES = 100_000
"""The largest classifier head a model builds (and the largest label count a data folder gives)."""


def check_probability(owner, arg, value, below_one=False):
    """A real number in ``[0, 1]`` (``[0, 1)`` with ``below_one``) -> ``float``; bools are refused."""
    interval = "[0, 1)" if below_one else "[0, 1]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        fail(owner, arg, f"a probability in {interval}", describe(value), TypeError)
    value = float(value)
    if not (0.0 <= value < 1.0 if below_one else 0.0 <= value <= 1.0):
        fail(owner, arg, f"a probability in {interval}", repr(value))
    return value


def check_heads(owner, arg, heads, dim):
    """A positive integer number of heads that divides ``dim``."""
    heads = check_int(owner, arg, heads, minimum=1)
    if dim % heads:
        fail(owner, arg, f"a positive divisor of dim = {dim}", heads)
    return heads


def check_num_classes(owner, value, arg="num_classes"):
    """``0`` (no head: features) to :data:`MAX_NUM_CLASSES` classes."""
    value = check_int(owner, arg, value, minimum=0)
    if value > MAX_NUM_CLASSES:
        fail(owner, arg, f"an integer >= 0 and <= {MAX_NUM_CLASSES} (the largest head refvit builds)", value)
    return value


def check_img_size(owner, value, arg="img_size"):
    """An image side ``s`` or a pair ``(H, W)`` of positive integers -> ``(H, W)``."""
    return as_tuple(owner, arg, value, 2, minimum=1)


def check_images(owner, x, in_chans, size=None, built_for=None, size_ok=None, float_dtype=None):
    """Check a model's input: channels-last images ``(B, H, W, in_chans)``, float32 or float64
    (``float_dtype``, the model's parameters' dtype, when given).

    ``size`` ``(H, W)``: the spatial size the model takes (``None``: any); ``size_ok`` overrides
    the test ``(H, W) == size`` for a model that also takes sizes giving the same feature maps.
    ``built_for`` ``(H, W)`` is named in the message of a model that takes any size. The message
    says what the input looks like when it is NCHW, a single image, or integer pixels.
    """
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    dtype = np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype
    if size is not None:
        want = f"(B, {size[0]}, {size[1]}, {in_chans})"
    else:
        want = f"(B, H, W, {in_chans})" + (f" (any H, W; built for {built_for[0]}x{built_for[1]})"
                                           if built_for is not None else "")
    hints = []
    if len(shape) == 4 and shape[1] == in_chans and shape[3] != in_chans:
        hints.append("this looks like NCHW: use x.transpose(0, 2, 3, 1)")
    elif len(shape) == 3 and shape[-1] == in_chans:
        hints.append("a single image? add the batch axis: x[None]")
    elif len(shape) == 4 and shape[3] != in_chans:
        hints.append(f"the model was built with in_chans={in_chans}")
    target = "float32" if float_dtype is None else np.dtype(float_dtype).name
    if dtype not in FLOAT_DTYPES:
        hints.append(f"convert the images to float, e.g. x.astype(np.{target}) / 255 for 8-bit pixels")
    elif float_dtype is not None and dtype != np.dtype(float_dtype):
        hints.append(f"the model's parameters are {target}: use x.astype(np.{target}), or model.to(np.{dtype.name})")
    dtype_ok = dtype in FLOAT_DTYPES and (float_dtype is None or dtype == np.dtype(float_dtype))
    if size_ok is None:
        size_ok = size is None or tuple(shape[1:3]) == tuple(size)
    bad_shape = len(shape) != 4 or shape[3] != in_chans or not size_ok
    if bad_shape or not dtype_ok:
        dtypes = "float32 or float64" if float_dtype is None else target
        message = (f"{owner}: expected images of shape {want}, channels-last, {dtypes}; got {shape} {dtype}"
                   + (f" ({'; '.join(hints)})" if hints else ""))
        raise (ValueError if bad_shape else TypeError)(message)
    return x
