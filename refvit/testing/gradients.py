r"""Gradient checks for ops that follow the refvit op contract.

An op module has ``forward(*inputs, **options, backend=None) -> (out, cache)``,
``backward(dout, cache) -> tuple`` and ``DIFFERENTIABLE``, the names of the
inputs ``backward`` returns gradients for, in order. Calls here take the op's
arguments as ``args`` (a tuple) and ``kwargs`` (a dict), exactly as
``op.forward`` would.

The scalar probed is :math:`L(x) = \langle g, f(x)\rangle` for a random upstream
gradient :math:`g`, so every output element counts (a plain ``sum`` can hide a
wrong gradient whose errors cancel).
"""
from __future__ import annotations

import inspect

import numpy as np

from refvit.testing.compare import assert_close, to_numpy


class GradcheckError(AssertionError):
    """A hand-written gradient disagrees with its numerical estimate."""


def relative_error(analytic, numeric) -> float:
    r"""``||a - n|| / max(||a||, ||n||)`` (0 when both are 0)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(n))
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - n) / scale)


def bind_inputs(op, args=(), kwargs=None, backend=None, dtype=None):
    """Bind ``args``/``kwargs`` to ``op.forward``; return (arguments dict, differentiable names present).

    Array arguments are copied (and cast to ``dtype`` when given), so that ops that
    update buffers in place (``batch_norm``) never touch the caller's arrays.
    """
    signature = inspect.signature(op.forward)
    bound = signature.bind(*args, **(kwargs or {}))
    arguments = dict(bound.arguments)
    if backend is not None:
        arguments["backend"] = backend
    for name, value in arguments.items():
        if isinstance(value, np.ndarray):
            arguments[name] = _copy(value, dtype)
        elif _is_array_sequence(value):
            arguments[name] = tuple(None if a is None else _copy(a, dtype) for a in value)
    present = tuple(name for name in op.DIFFERENTIABLE if arguments.get(name) is not None)
    return arguments, present


def _copy(a, dtype):
    return a.astype(dtype if dtype is not None and a.dtype.kind == "f" else a.dtype, copy=True)


def _is_array_sequence(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        a is None or isinstance(a, np.ndarray) for a in value) and any(isinstance(a, np.ndarray) for a in value)


def _leaves(arguments, names):
    """(name, position) for every array to perturb: position None for a plain array input,
    the element index for an input that is a sequence of arrays (e.g. per-head weights)."""
    leaves = []
    for name in names:
        value = arguments[name]
        if isinstance(value, tuple):
            leaves.extend((name, i) for i, a in enumerate(value) if a is not None)
        else:
            leaves.append((name, None))
    return leaves


def _get(arguments, leaf):
    name, position = leaf
    return arguments[name] if position is None else arguments[name][position]


def _replace(arguments, leaf, array):
    name, position = leaf
    if position is None:
        return {**arguments, name: array}
    items = list(arguments[name])
    items[position] = array
    return {**arguments, name: tuple(items)}


def _label(leaf):
    name, position = leaf
    return name if position is None else f"{name}[{position}]"


def _call(op, arguments):
    return op.forward(**arguments)


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _random_like(rng, outputs):
    return tuple(rng.standard_normal(np.shape(o)).astype(to_numpy(o).dtype) for o in outputs)


def _inner(upstream, outputs):
    return sum(float(np.sum(np.asarray(g, np.float64) * to_numpy(o).astype(np.float64))) for g, o in zip(upstream, outputs))


def _analytic(op, arguments, upstream, names):
    out, cache = _call(op, arguments)
    outputs = _as_tuple(out)
    grads = op.backward(upstream if isinstance(out, tuple) else upstream[0], cache)
    if len(grads) != len(op.DIFFERENTIABLE):
        raise GradcheckError(
            f"{op.__name__}.backward returned {len(grads)} gradients; expected one per input in "
            f"DIFFERENTIABLE = {op.DIFFERENTIABLE}"
        )
    by_name = dict(zip(op.DIFFERENTIABLE, grads))
    analytic = {}
    for leaf in _leaves(arguments, names):
        name, position = leaf
        grad = by_name[name] if position is None else by_name[name][position]
        analytic[leaf] = to_numpy(grad)
    return outputs, analytic


def numerical_vjp(fn, inputs, upstream, eps=1e-6):
    r"""Central-difference estimate of :math:`J^T g` for ``fn(*inputs)``, one array per input.

    ``fn`` maps NumPy arrays to an array (or a tuple of arrays); ``upstream`` has the
    output's shape. Works for any function, e.g. a whole model's forward.
    """
    upstream = _as_tuple(upstream)
    inputs = [np.array(x, dtype=np.float64, copy=True) for x in inputs]
    grads = []
    for x in inputs:
        grad = np.zeros(x.shape, dtype=np.float64)
        flat = x.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + eps
            plus = _inner(upstream, _as_tuple(fn(*inputs)))
            flat[i] = saved - eps
            minus = _inner(upstream, _as_tuple(fn(*inputs)))
            flat[i] = saved
            grad.reshape(-1)[i] = (plus - minus) / (2.0 * eps)
        grads.append(grad)
    return grads


def gradcheck(op, args=(), kwargs=None, *, wrt=None, eps=1e-6, tol=1e-6, seed=0, backend="numpy"):
    """Check ``op.backward`` against central differences, in float64.

    Every differentiable input that is not ``None`` (or those named in ``wrt``)
    is checked: the relative error ``||analytic - numeric|| / max(norms)`` must be
    below ``tol``. Returns ``{input name: relative error}``; raises
    :class:`GradcheckError` naming the worst input otherwise.
    """
    arguments, names = bind_inputs(op, args, kwargs, backend=backend, dtype=np.float64)
    if wrt is not None:
        unknown = set(wrt) - set(op.DIFFERENTIABLE)
        if unknown:
            raise ValueError(f"gradcheck: 'wrt' names {sorted(unknown)} that {op.__name__} has no gradient for")
        names = tuple(n for n in names if n in wrt)
    rng = np.random.default_rng(seed)
    out, _ = _call(op, dict(arguments))
    upstream = _random_like(rng, _as_tuple(out))
    _, analytic = _analytic(op, dict(arguments), upstream, names)

    errors = {}
    for leaf, grad in analytic.items():
        def f(value, leaf=leaf):
            return _call(op, _replace(arguments, leaf, value))[0]

        (numeric,) = numerical_vjp(f, [_get(arguments, leaf)], upstream, eps=eps)
        label = _label(leaf)
        errors[label] = relative_error(grad, numeric)
        if not np.isfinite(errors[label]) or errors[label] > tol:
            worst = np.unravel_index(int(np.argmax(np.abs(grad - numeric))), numeric.shape) if numeric.ndim else ()
            raise GradcheckError(
                f"{op.__name__}: gradient of '{label}' has relative error {errors[label]:.3e} > {tol:g}; "
                f"worst at index {tuple(int(i) for i in worst)}: analytic {grad[worst]!r}, "
                f"numeric {numeric[worst]!r}"
            )
    return errors


def check_vjp(op, args=(), kwargs=None, *, wrt=None, eps=1e-6, tol=1e-6, seed=0, backend="numpy"):
    r"""Dot-product test: for a random direction :math:`v_i` of each input,
    :math:`\langle g, (f(x + \epsilon v_i) - f(x - \epsilon v_i)) / 2\epsilon\rangle
    = \langle (J^T g)_i, v_i\rangle`. Two forwards per input, so it suits
    Hypothesis-drawn shapes. Returns ``{name: relative error}``; raises on failure.
    """
    arguments, names = bind_inputs(op, args, kwargs, backend=backend, dtype=np.float64)
    if wrt is not None:
        names = tuple(n for n in names if n in wrt)
    rng = np.random.default_rng(seed)
    out, _ = _call(op, dict(arguments))
    upstream = _random_like(rng, _as_tuple(out))
    _, analytic = _analytic(op, dict(arguments), upstream, names)
    errors = {}
    for leaf, grad in analytic.items():
        x = _get(arguments, leaf)
        direction = rng.standard_normal(x.shape)
        plus = _inner(upstream, _as_tuple(_call(op, _replace(arguments, leaf, x + eps * direction))[0]))
        minus = _inner(upstream, _as_tuple(_call(op, _replace(arguments, leaf, x - eps * direction))[0]))
        directional = (plus - minus) / (2.0 * eps)
        projected = float(np.sum(grad * direction))
        scale = max(abs(directional), abs(projected), np.linalg.norm(grad) * eps)
        label = _label(leaf)
        errors[label] = 0.0 if scale == 0.0 else abs(directional - projected) / scale
        if not np.isfinite(errors[label]) or errors[label] > tol:
            raise GradcheckError(
                f"{op.__name__}: VJP of '{label}' fails the dot-product test: <g, J v> = {directional!r}, "
                f"<J^T g, v> = {projected!r} (relative error {errors[label]:.3e} > {tol:g})"
            )
    return errors


def check_backends(op, args=(), kwargs=None, *, backend="cpu", reference="numpy", dtype=None,
                   rtol=None, atol=None, seed=0, backward=True):
    """Run ``op`` on ``backend`` and ``reference`` with the same inputs; compare outputs and gradients.

    ``dtype`` casts the float array arguments first (``np.float32`` or ``np.float64``).
    Tolerances default to :func:`assert_close`'s for the dtype.
    """
    ref_args, names = bind_inputs(op, args, kwargs, backend=reference, dtype=dtype)
    test_args, _ = bind_inputs(op, args, kwargs, backend=backend, dtype=dtype)
    ref_out, ref_cache = _call(op, ref_args)
    test_out, test_cache = _call(op, test_args)
    label = op.__name__.rsplit(".", 1)[-1]
    for i, (t, r) in enumerate(zip(_as_tuple(test_out), _as_tuple(ref_out))):
        for which, value in ((backend, t), (reference, r)):
            got = to_numpy(value).dtype
            assert dtype is None or got == np.dtype(dtype), f"{label}: {which} output {i} has dtype {got}, input {np.dtype(dtype)}"
        assert_close(t, r, rtol=rtol, atol=atol, name=f"{label} output {i} ({backend} vs {reference})")
    if not backward:
        return
    rng = np.random.default_rng(seed)
    upstream = _random_like(rng, _as_tuple(ref_out))
    g = upstream if isinstance(ref_out, tuple) else upstream[0]
    ref_grads = dict(zip(op.DIFFERENTIABLE, op.backward(g, ref_cache)))
    test_grads = dict(zip(op.DIFFERENTIABLE, op.backward(g, test_cache)))
    for name in op.DIFFERENTIABLE:
        r, t = ref_grads[name], test_grads[name]
        pairs = list(zip(t, r)) if isinstance(r, (list, tuple)) else [(t, r)]
        if isinstance(r, (list, tuple)):
            assert isinstance(t, (list, tuple)) and len(t) == len(r), f"{label}: d{name} differs in length"
        for i, (t_item, r_item) in enumerate(pairs):
            item = f"d{name}" if len(pairs) == 1 and not isinstance(r, (list, tuple)) else f"d{name}[{i}]"
            if r_item is None or t_item is None:
                assert r_item is None and t_item is None, f"{label}: {item} is None on one backend only"
                continue
            got = to_numpy(t_item).dtype
            assert dtype is None or got == np.dtype(dtype), f"{label}: {item} on {backend} has dtype {got}"
            assert_close(t_item, r_item, rtol=rtol, atol=atol, name=f"{label} {item} ({backend} vs {reference})")
