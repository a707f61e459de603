"""The op contract, checked for every op in the op table (``refvit.ops.table()``).

Each test is one function parametrised over the table x backend (x dtype, x memory layout), so an op
gets all of them by being registered:

* ``cpu`` and ``cuda`` give the ``numpy`` reference's output, every gradient and every buffer the op
  updates in place, on the op's ``example`` inputs, in float32 and float64, and with the array inputs
  (and ``dout``) in every memory layout of :data:`refvit.testing.strategies.LAYOUTS` (``numpy`` too,
  against itself in C order);
* ``gradcheck`` and ``check_vjp`` on the example (float64, ``numpy`` and ``cpu``);
* zero-size inputs: every input in ``spec.batched`` sliced to ``[:0]``;
* the bad inputs every op rejects alike: an integer array, mixed float dtypes, an unknown backend,
  a ``dout`` of the wrong shape or dtype, a wrong rank for an op of fixed rank (one whose ``numpy``
  backend refuses the first array input with an extra leading axis).

Inputs that suit an op better (away from a kink, distinct values for a maximum) belong in its
``example``, not here. The op's own properties and edge cases stay in ``tests/ops/test_<op>.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

from refvit import ops
from refvit.testing import assert_close, bind_inputs, check_vjp, gradcheck, to_numpy
from refvit.testing.strategies import LAYOUTS, with_layouts
from tests.conftest import tolerance

EXAMPLE_SEED = 0
DTYPES = (np.float32, np.float64)
SPECS = ops.table()


def _param(spec, backend, *rest):
    ids = [spec.name, backend] + [np.dtype(r).name if isinstance(r, type) else str(r) for r in rest]
    marks = [pytest.mark.cuda] if backend == "cuda" else []
    return pytest.param(spec, backend, *rest, id="-".join(ids), marks=marks)


def _cases(backends=("numpy", "cpu", "cuda"), dtypes=(None,), layouts=(None,), where=lambda spec: True):
    """``(spec, backend[, dtype][, layout])`` for every op in the table and every backend it has."""
    cases = []
    for spec in SPECS:
        if not where(spec):
            continue
        for backend in (b for b in spec.backends if b in backends):
            for dtype in dtypes:
                for layout in layouts:
                    rest = [r for r in (dtype, layout) if r is not None]
                    if backend == "numpy" and layout == "C":
                        continue  # the reference itself
                    cases.append(_param(spec, backend, *rest))
    return cases


# -- inputs ---------------------------------------------------------------------------------------

def _arguments(spec, backend, dtype=None, layout="C"):
    """The example's arguments bound to ``forward``'s names: fresh copies, floats cast to ``dtype``."""
    args, kwargs = spec.example(np.random.default_rng(EXAMPLE_SEED))
    arguments, _ = bind_inputs(spec.module, args, kwargs, backend=backend, dtype=dtype)
    return {name: with_layouts(value, layout) for name, value in arguments.items()}


def _is_array(value):
    return isinstance(value, np.ndarray)


def _float_arrays(arguments):
    """Names of the float array inputs (an input that is a tuple of arrays counts once)."""
    names = []
    for name, value in arguments.items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(_is_array(a) and a.dtype.kind == "f" for a in items):
            names.append(name)
    return names


def _first_array(arguments):
    return next(name for name, value in arguments.items() if _is_array(value))


def _cast(value, dtype):
    if isinstance(value, (tuple, list)):
        return type(value)(None if a is None else a.astype(dtype) for a in value)
    return value.astype(dtype)


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


def _upstream(out, layout="C", seed=1):
    """A random ``dout`` of the output's shape and dtype (a tuple for an op with several outputs)."""
    rng = np.random.default_rng(seed)
    grads = tuple(with_layouts(rng.standard_normal(np.shape(o)).astype(to_numpy(o).dtype), layout)
                  for o in _outputs(out))
    return grads if isinstance(out, tuple) else grads[0]


def _gradient_items(spec, grads, arguments):
    """``(label, gradient, input)`` for every differentiable input, one item per array of a tuple input."""
    assert len(grads) == len(spec.differentiable), (
        f"{spec.name}: backward returned {len(grads)} gradients for {spec.differentiable}")
    items = []
    for name, grad in zip(spec.differentiable, grads):
        value = arguments.get(name)
        if isinstance(value, (tuple, list)):
            assert isinstance(grad, (tuple, list)) and len(grad) == len(value), f"{spec.name}: d{name}"
            items.extend((f"d{name}[{i}]", g, a) for i, (g, a) in enumerate(zip(grad, value)))
        else:
            items.append((f"d{name}", grad, value))
    return items


def _fixed_rank(spec):
    """True when the op rejects its first array input with one more axis (it has a fixed rank)."""
    arguments = _arguments(spec, "numpy")
    first = _first_array(arguments)
    try:
        spec.module.forward(**{**arguments, first: arguments[first][None]})
    except Exception:
        return True
    return False


# -- backends agree -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, backend, dtype, layout", _cases(dtypes=DTYPES, layouts=LAYOUTS))
def test_backend_matches_numpy(spec, backend, dtype, layout):
    tol = tolerance(dtype)
    reference = _arguments(spec, "numpy", dtype)
    tested = _arguments(spec, backend, dtype, layout)
    expected, reference_cache = spec.module.forward(**reference)
    out, cache = spec.module.forward(**tested)
    label = f"{spec.name} ({backend}, {layout} layout)"
    for i, (o, e) in enumerate(zip(_outputs(out), _outputs(expected))):
        assert to_numpy(o).dtype == dtype, f"{label}: output {i} has dtype {to_numpy(o).dtype}"
        assert_close(o, e, **tol, name=f"{label} output {i}")
    for name, value in reference.items():  # buffers updated in place (running statistics)
        if _is_array(value) and value.dtype.kind == "f":
            assert_close(tested[name], value, **tol, name=f"{label} '{name}' after forward")

    grads = spec.module.backward(_upstream(expected, layout), cache)
    reference_grads = spec.module.backward(_upstream(expected), reference_cache)
    expected_items = _gradient_items(spec, reference_grads, reference)
    for (name, grad, _), (_, want, _) in zip(_gradient_items(spec, grads, tested), expected_items):
        if want is None:
            assert grad is None, f"{label}: {name} is None on numpy only"
            continue
        assert to_numpy(grad).dtype == dtype, f"{label}: {name} has dtype {to_numpy(grad).dtype}"
        assert_close(grad, want, **tol, name=f"{label} {name}")


# -- gradients ------------------------------------------------------------------------------------

def _differentiable_labels(spec):
    """The names ``gradcheck`` reports for the example: ``name``, or ``name[i]`` for a tuple of arrays."""
    labels = set()
    for name in spec.differentiable:
        value = _arguments(spec, "numpy").get(name)
        if isinstance(value, (tuple, list)):
            labels.update(f"{name}[{i}]" for i, a in enumerate(value) if a is not None)
        elif value is not None:
            labels.add(name)
    return labels


@pytest.mark.parametrize("spec, backend", _cases(backends=("numpy", "cpu")))
def test_gradcheck(spec, backend):
    args, kwargs = spec.example(np.random.default_rng(EXAMPLE_SEED))
    errors = gradcheck(spec.module, args, kwargs, backend=backend)
    assert set(errors) == _differentiable_labels(spec), f"{spec.name}: the example leaves out an input"


@pytest.mark.parametrize("spec, backend", _cases(backends=("numpy", "cpu")))
def test_check_vjp(spec, backend):
    args, kwargs = spec.example(np.random.default_rng(EXAMPLE_SEED))
    errors = check_vjp(spec.module, args, kwargs, backend=backend)
    assert set(errors) == _differentiable_labels(spec)


# -- zero-size inputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, backend, dtype", _cases(dtypes=DTYPES, where=lambda spec: spec.batched))
def test_zero_size_batch(spec, backend, dtype):
    full, _ = spec.module.forward(**_arguments(spec, "numpy", dtype))
    arguments = _arguments(spec, backend, dtype)
    for name in spec.batched:
        arguments[name] = arguments[name][:0]
    out, cache = spec.module.forward(**arguments)
    for i, (o, f) in enumerate(zip(_outputs(out), _outputs(full))):
        # the batch axis of the output empties; a 0-d output (a reduction over the batch) stays 0-d
        expected = (0,) + f.shape[1:] if f.ndim else ()
        assert np.shape(o) == expected, f"{spec.name}: output {i} has shape {np.shape(o)}, expected {expected}"
        assert to_numpy(o).dtype == dtype
    grads = spec.module.backward(_upstream(out), cache)
    for label, grad, value in _gradient_items(spec, grads, arguments):
        if value is None:
            assert grad is None, f"{spec.name}: {label} for an input that is None"
            continue
        grad = to_numpy(grad)
        assert grad.shape == value.shape, f"{spec.name}: {label} has shape {grad.shape}, input {value.shape}"
        assert grad.dtype == dtype, f"{spec.name}: {label} has dtype {grad.dtype}"
        if label[1:].split("[")[0] not in spec.batched:
            assert not grad.any(), f"{spec.name}: {label} is not zero for an empty batch"


# -- bad inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, backend", _cases())
def test_integer_array_is_a_type_error(spec, backend):
    arguments = _arguments(spec, backend)
    first = _first_array(arguments)
    arguments[first] = arguments[first].astype(np.int32)
    with pytest.raises(TypeError, match=rf"^{spec.name}: '{first}' "):
        spec.module.forward(**arguments)


def _several_float_arrays(spec):
    return len(_float_arrays(_arguments(spec, "numpy"))) > 1


@pytest.mark.parametrize("spec, backend", _cases(where=_several_float_arrays))
def test_mixed_float_dtypes_are_a_type_error(spec, backend):
    arguments = _arguments(spec, backend)
    first = _float_arrays(arguments)[0]
    arguments[first] = _cast(arguments[first], np.float32)
    with pytest.raises(TypeError, match=rf"^{spec.name}: '([^']*, )?{first}(, [^']*)?' must be of one dtype"):
        spec.module.forward(**arguments)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_unknown_backend_is_a_value_error(spec):
    arguments = _arguments(spec, "tpu")
    with pytest.raises(ValueError, match=rf"^{spec.name}: 'backend' must be one of"):
        spec.module.forward(**arguments)


@pytest.mark.parametrize("spec, backend", _cases())
def test_dout_of_wrong_shape_or_dtype(spec, backend):
    out, cache = spec.module.forward(**_arguments(spec, backend))
    dout = _upstream(out)
    first = _outputs(dout)[0]
    wrong_shape = np.zeros(first.shape[:-1] + (first.shape[-1] + 1,) if first.ndim else (2,))
    wrong_dtype = first.astype(np.float32)
    for bad, error in ((wrong_shape, ValueError), (wrong_dtype, TypeError)):
        bad = (bad,) + _outputs(dout)[1:] if isinstance(dout, tuple) else bad
        with pytest.raises(error, match=rf"^{spec.name}: 'dout' "):
            spec.module.backward(bad, cache)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_backward_refuses_a_cache_it_did_not_make(spec):
    out, cache = spec.module.forward(**_arguments(spec, "numpy"))
    dout = _upstream(out)
    other = next(s for s in SPECS if s.name != spec.name)
    _, foreign = other.module.forward(**_arguments(other, "numpy"))
    for bad in (None, tuple(cache), foreign):
        with pytest.raises(TypeError, match=rf"^{spec.name}: 'cache' must be the cache returned by {spec.name}.forward"):
            spec.module.backward(dout, bad)


@pytest.mark.parametrize("spec, backend", _cases(where=_fixed_rank))
def test_wrong_rank_is_a_value_error(spec, backend):
    arguments = _arguments(spec, backend)
    first = _first_array(arguments)
    x = arguments[first]
    for wrong in (x[None], x[0]):
        with pytest.raises(ValueError, match=rf"^{spec.name}: '{first}' must be a {x.ndim}-D array"):
            spec.module.forward(**{**arguments, first: wrong})
