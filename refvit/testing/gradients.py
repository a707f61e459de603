r"""Gradient checks for ops that follow the refvit op contract.

An op module has ``forward(*inputs, **options, backend=None) -> (out, cache)``,
``backward(dout, cache) -> tuple`` and ``DIFFERENTIABLE``, the names of the
inputs ``backward`` returns gradients for, in order. Calls here take the op's
arguments as ``args`` (a tuple) and ``kwargs`` (a dict), exactly as
``op.forward`` would.

The scalar probed is :math:`L(x) = \langle g, f(x)\rangle` for a random upstream
gradient :math:`g`, so every output element counts (a plain ``sum`` can hide a
wrong gradient whose errors cancel).

A check passes when the analytic and the central-difference values agree to the
relative ``tol``, or else when their difference is below the central difference's
noise floor (its truncation and rounding error, :mod:`refvit.testing.noise`): a
derivative of 1e-9 through terms of size 1 is resolved to about 1e-2 relative, and
no gradient is wrong for missing it. Pass ``noise_floor=False`` for the plain test.
"""
from __future__ import annotations

import inspect

import numpy as np

from refvit.testing import noise
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


def gradcheck(op, args=(), kwargs=None, *, wrt=None, eps=1e-6, tol=1e-6, seed=0, backend="numpy",
              noise_floor=True):
    r"""Check ``op.backward`` against central differences, in float64.

    Every differentiable input that is not ``None`` (or those named in ``wrt``)
    is checked: the relative error ``||analytic - numeric|| / max(norms)`` must be
    below ``tol``. When it is not and ``noise_floor`` is true, each element's
    mismatch is first reduced by what the central difference cannot resolve
    (:func:`refvit.testing.noise.noise_floor`, eleven more forwards per element,
    largest mismatch first, until the answer is certain),
    and the check fails only when what is left is above ``tol``. Returns
    ``{input name: relative error}`` (before the floor); raises
    :class:`GradcheckError` naming the worst input and element otherwise.
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

        x = _get(arguments, leaf)
        (numeric,) = numerical_vjp(f, [x], upstream, eps=eps)
        label = _label(leaf)
        errors[label] = relative_error(grad, numeric)
        if np.isfinite(errors[label]) and errors[label] <= tol:
            continue
        mismatch = np.abs(np.asarray(grad, np.float64) - numeric)
        if not noise_floor or not np.isfinite(errors[label]):
            worst = _index_of_largest(mismatch)
            raise GradcheckError(
                f"{op.__name__}: gradient of '{label}' has relative error {errors[label]:.3e} > {tol:g}; "
                f"worst at index {worst}: analytic {grad[worst]!r}, numeric {numeric[worst]!r}")
        explained = _explain_by_noise(f, x, upstream, eps, tol, grad, numeric,
                                     _output_scale(upstream, _as_tuple(out), x))
        if explained is None:
            continue
        worst, floor, beyond = explained
        raise GradcheckError(
            f"{op.__name__}: gradient of '{label}' has relative error {errors[label]:.3e} > {tol:g}, at least "
            f"{beyond:.3e} beyond the central differences' noise floors; worst at index {worst}: "
            f"analytic {grad[worst]!r}, numeric {numeric[worst]!r}, |difference| {mismatch[worst]:.3e} > "
            f"noise floor {floor.floor:.3e} (truncation {floor.truncation:.3e}, rounding {floor.rounding:.3e})"
        )
    return errors


def check_vjp(op, args=(), kwargs=None, *, wrt=None, eps=1e-6, tol=1e-6, seed=0, backend="numpy",
              noise_floor=True):
    r"""Dot-product test: for a random direction :math:`v_i` of each input,
    :math:`\langle g, (f(x + \epsilon v_i) - f(x - \epsilon v_i)) / 2\epsilon\rangle
    = \langle (J^T g)_i, v_i\rangle`. Two forwards per input, so it suits
    Hypothesis-drawn shapes.

    The two sides must agree to the relative ``tol``; when they do not and
    ``noise_floor`` is true, the check passes if their difference is below the
    central difference's noise floor (:func:`refvit.testing.noise.noise_floor`,
    from nine more forwards along the same direction). Returns
    ``{name: relative error}``; raises :class:`GradcheckError` on failure.
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

        def along(step, leaf=leaf, x=x, direction=direction):
            return _inner(upstream, _as_tuple(_call(op, _replace(arguments, leaf, x + step * direction))[0]))

        plus, minus = along(eps), along(-eps)
        directional = (plus - minus) / (2.0 * eps)
        projected = float(np.sum(grad * direction))
        scale = max(abs(directional), abs(projected), np.linalg.norm(grad) * eps)
        label = _label(leaf)
        errors[label] = 0.0 if scale == 0.0 else abs(directional - projected) / scale
        if np.isfinite(errors[label]) and errors[label] <= tol:
            continue
        difference = abs(directional - projected)
        detail = ""
        if noise_floor and np.isfinite(errors[label]):
            floor = noise.noise_floor(along, eps, _output_scale(upstream, _as_tuple(out), x),
                                      float(np.sum(np.abs(grad * x))), known={eps: plus, -eps: minus})
            if np.isfinite(floor.floor) and difference <= floor.floor:
                continue
            detail = (f"; |difference| {difference:.3e} > noise floor {floor.floor:.3e} "
                      f"(truncation {floor.truncation:.3e}, rounding {floor.rounding:.3e})")
        raise GradcheckError(
            f"{op.__name__}: VJP of '{label}' fails the dot-product test: <g, J v> = {directional!r}, "
            f"<J^T g, v> = {projected!r} (relative error {errors[label]:.3e} > {tol:g}{detail})"
        )
    return errors


def _output_scale(upstream, outputs, x):
    r""":math:`\sum_i \lvert g_i\rvert (\lvert f_i(x)\rvert + \max_j \lvert x_j\rvert)` over every output: the size
    of the terms the forward and :math:`\langle g, f\rangle` round (see :mod:`refvit.testing.noise`)."""
    largest_input = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return sum(float(np.sum(np.abs(np.asarray(g, np.float64)) * (np.abs(to_numpy(o).astype(np.float64))
                                                                 + largest_input)))
               for g, o in zip(upstream, outputs))


def _index_of_largest(values):
    values = np.where(np.isnan(values), np.inf, values)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape)) if values.ndim else ()


def _explain_by_noise(fn, x, upstream, eps, tol, analytic, numeric, output_scale):
    """Reduce each element's mismatch by its central difference's noise floor, largest mismatch first.

    Returns None when what is left is within ``tol`` (relative), else ``(index, NoiseFloor, relative
    error left over the elements measured)`` for the worst element. Stops as soon as the answer is
    certain: the elements not yet measured count with their whole mismatch.
    """
    upstream = _as_tuple(upstream)
    x = np.array(x, dtype=np.float64, copy=True)
    flat = x.reshape(-1)
    analytic = np.asarray(analytic, np.float64).reshape(-1)
    numeric = np.asarray(numeric, np.float64).reshape(-1)
    excess = np.abs(analytic - numeric)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    allowed = tol * scale
    floors = {}

    def along(offset, i):
        saved = flat[i]
        flat[i] = saved + offset
        value = _inner(upstream, _as_tuple(fn(x)))
        flat[i] = saved
        return value

    for count, i in enumerate(np.argsort(-excess, kind="stable"), start=1):
        size = max(abs(analytic[i]), abs(numeric[i]))
        floors[i] = noise.noise_floor(lambda offset, i=i: along(offset, i), eps, output_scale,
                                      size * abs(flat[i]))
        if np.isfinite(floors[i].floor):
            excess[i] = max(excess[i] - floors[i].floor, 0.0)
        measured = np.fromiter(floors, dtype=np.int64, count=count)
        if np.linalg.norm(excess) <= allowed:
            return None
        if np.linalg.norm(excess[measured]) > allowed or count == flat.size:
            worst = int(measured[np.argmax(excess[measured])])
            beyond = float(np.linalg.norm(excess[measured]) / scale)
            return tuple(int(j) for j in np.unravel_index(worst, x.shape)), floors[worst], beyond
    return None


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
