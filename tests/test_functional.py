"""refvit.functional: every op on Tensors gives the op's output and the op's own gradients."""
import inspect

import numpy as np
import pytest

from refvit import functional as F
from refvit import ops
from refvit.autograd import Tensor
from refvit.testing import assert_close

OPS = [spec.name for spec in ops.table()]


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        return type(value)(_copy(v) for v in value)
    return value


def _as_tensors(arguments, differentiable):
    """Differentiable array arguments (or sequences of arrays) as Tensors that require a gradient."""
    tensors = {}
    for name, value in arguments.items():
        if name in differentiable and isinstance(value, np.ndarray):
            tensors[name] = Tensor(value.copy(), requires_grad=True)
        elif name in differentiable and isinstance(value, (list, tuple)):
            tensors[name] = tuple(None if v is None else Tensor(v.copy(), requires_grad=True) for v in value)
        else:
            tensors[name] = _copy(value)
    return tensors


def _grad(value):
    if isinstance(value, tuple):
        return tuple(None if v is None else v.grad for v in value)
    return None if value is None else value.grad


@pytest.mark.parametrize("name", OPS)
def test_function_matches_op_forward_and_backward(name, rng):
    op = getattr(ops, name)
    args, kwargs = op.example(rng)
    arguments = dict(inspect.signature(op.forward).bind(*args, **kwargs).arguments)
    arguments["backend"] = "numpy"
    expected, cache = op.forward(**{k: _copy(v) for k, v in arguments.items()})
    tensors = _as_tensors(arguments, op.DIFFERENTIABLE)
    out = getattr(F, name)(**tensors)
    outputs = out if isinstance(out, tuple) else (out,)
    expected_outputs = expected if isinstance(expected, tuple) else (expected,)
    for got, want in zip(outputs, expected_outputs):
        assert isinstance(got, Tensor)
        assert_close(got.data, want, name=f"{name} output")
    upstream = tuple(rng.standard_normal(np.shape(o)) for o in expected_outputs)
    expected_grads = op.backward(upstream if isinstance(expected, tuple) else upstream[0], cache)
    root = outputs[0] if len(outputs) == 1 else F.concatenate([F.reshape(o, (-1,)) for o in outputs])
    root.backward(upstream[0] if len(outputs) == 1 else np.concatenate([u.reshape(-1) for u in upstream]))
    for input_name, want in zip(op.DIFFERENTIABLE, expected_grads):
        got = _grad(tensors.get(input_name))
        if want is None:
            continue
        for g, w in (zip(got, want) if isinstance(want, (list, tuple)) else [(got, want)]):
            assert_close(g, w, name=f"{name} d{input_name}")


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_a_written_out_function_with_its_signature(name):
    """``F.<name>`` is defined in ``refvit/functional.py`` itself (a reader's ``grep "def <name>"``
    finds it), has the op's ``forward`` signature and calls that op."""
    function = getattr(F, name)
    assert function.__module__ == "refvit.functional" and function.__name__ == name
    assert f"def {name}(" in inspect.getsource(F)
    op_parameters = list(inspect.signature(getattr(ops, name).forward).parameters)
    assert list(inspect.signature(function).parameters) == op_parameters
    assert f"apply(ops.{name}," in inspect.getsource(function)


def test_unknown_function_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_op"):
        F.no_such_op


def test_backend_passes_through(rng):
    x = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match="gelu: 'backend'"):
        F.gelu(x, backend="tpu")
    assert_close(F.gelu(x, backend="cpu").data, F.gelu(x, backend="numpy").data)


def test_numpy_arguments_are_constants(rng):
    out = F.gelu(rng.standard_normal(3))
    assert isinstance(out, Tensor) and not out.requires_grad


def test_structural_functions_are_exported():
    for name in ("reshape", "permute", "transpose", "concatenate", "cat", "stack", "split", "chunk", "getitem",
                 "pad", "broadcast_to", "flatten", "unsqueeze", "squeeze"):
        assert callable(getattr(F, name))


@pytest.mark.cuda
def test_cuda_backend_through_the_tape(rng):
    data = rng.standard_normal((2, 3))
    g = rng.standard_normal((2, 3))
    grads = []
    for backend in ("numpy", "cuda"):
        x = Tensor(data, requires_grad=True)
        out = F.gelu(x, backend=backend)
        assert isinstance(out.data, np.ndarray)
        out.backward(g)
        grads.append(x.grad)
    assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-11)
