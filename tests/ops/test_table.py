"""The op table (refvit/ops/_table.py) and the dispatch every op runs through (refvit/ops/_dispatch.py)."""
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import refvit.ops
from refvit import kernels, ops
from refvit.ops import _dispatch as dispatch
from refvit.ops._table import BACKENDS, OpSpec

SPECS = ops.table()
NAMES = [spec.name for spec in SPECS]


def _forward_parameters(spec):
    return [name for name in inspect.signature(spec.module.forward).parameters if name != "backend"]


def _bound_example(spec, rng):
    args, kwargs = spec.example(rng)
    bound = inspect.signature(spec.module.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    del arguments["backend"]
    return arguments


def test_every_op_module_is_in_the_table_once_and_sorted():
    modules = sorted(m.name for m in pkgutil.iter_modules(refvit.ops.__path__) if not m.name.startswith("_"))
    assert NAMES == modules
    assert NAMES == sorted(set(NAMES))
    assert ops.list_ops() == NAMES
    assert all(isinstance(spec, OpSpec) for spec in SPECS)


def test_spec_of_an_unknown_op_names_the_known_ops():
    assert ops.spec("na2d").name == "na2d"
    with pytest.raises(ValueError, match="unknown op 'nope'; ops are: add, attention"):
        ops.spec("nope")


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_fields_agree_with_the_op_module(spec, rng):
    module = spec.module
    assert module is importlib.import_module(f"refvit.ops.{spec.name}")
    assert module.OP == spec.name
    assert tuple(module.DIFFERENTIABLE) == spec.differentiable
    parameters = _forward_parameters(spec)
    assert list(spec.differentiable) == [p for p in parameters if p in spec.differentiable], "signature order"
    assert set(spec.batched) <= set(parameters)
    assert spec.backends == BACKENDS
    assert callable(module.forward) and callable(module.backward) and callable(module.example)


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_example_runs_and_backward_gives_one_gradient_per_differentiable_input(spec, rng):
    arguments = _bound_example(spec, rng)
    for name, value in arguments.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert value.dtype == np.float64, f"{spec.name}.example: {name} is {value.dtype}"
    out, cache = spec.module.forward(**arguments, backend="numpy")
    upstream = tuple(np.ones_like(o) for o in out) if isinstance(out, tuple) else np.ones_like(out)
    grads = spec.module.backward(upstream, cache)
    assert isinstance(grads, tuple) and len(grads) == len(spec.differentiable)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.batched], ids=[s.name for s in SPECS if s.batched])
def test_batched_inputs_cut_to_an_empty_batch_give_a_valid_call(spec, rng):
    arguments = _bound_example(spec, rng)
    for name in spec.batched:
        assert isinstance(arguments[name], np.ndarray) and arguments[name].ndim >= 1
        arguments[name] = arguments[name][:0]
    out, cache = spec.module.forward(**arguments, backend="numpy")
    assert np.shape(out)[0] == 0 if not isinstance(out, tuple) else all(np.shape(o)[0] == 0 for o in out)


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_kernel_modules_are_named_for_cpu_and_cuda_and_have_both_entries(spec):
    assert set(spec.kernels) == {"cpu", "cuda"}
    assert spec.kernels["cuda"] == f"refvit.kernels.cuda.{spec.name}"
    path = spec.kernels["cpu"]
    assert path == f"refvit.kernels.cpu.{spec.name}"
    module = kernels.load("cpu", path)
    assert callable(module.forward) and callable(module.backward)


@pytest.mark.cuda
@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_cuda_kernel_modules_have_both_entries(spec):
    module = kernels.load("cuda", spec.kernels["cuda"])
    assert callable(module.forward) and callable(module.backward)


def test_a_backend_without_kernels_runs_the_reference(monkeypatch, rng):
    """A backend the table gives no kernel module runs the NumPy reference, bit for bit."""
    from refvit.ops import _table

    spec = ops.spec("add")
    monkeypatch.setitem(_table._BY_NAME, "add", _table.OpSpec("add", spec.differentiable, spec.batched,
                                                              {"cpu": None, "cuda": spec.kernels["cuda"]}))
    arguments = _bound_example(spec, rng)
    module = kernels.load("cpu", spec.kernels["cpu"])
    monkeypatch.setattr(module, "forward", lambda *a: pytest.fail("the cpu kernel ran"))
    cpu, _ = spec.module.forward(**arguments, backend="cpu")
    reference, _ = spec.module.forward(**arguments, backend="numpy")
    np.testing.assert_array_equal(cpu, reference)


def test_dispatch_runs_cpu_kernels_under_the_thread_rule(monkeypatch, rng):
    from refvit.kernels.cpu import _threads

    calls = []
    rule = _threads.run_as_kernel_entry
    monkeypatch.setattr(_threads, "run_as_kernel_entry", lambda fn, args: calls.append(fn.__name__) or rule(fn, args))
    out, cache = ops.relu.forward(rng.standard_normal(5), backend="cpu")
    ops.relu.backward(np.ones(5), cache)
    assert calls == ["forward", "backward"]


def test_dispatch_sends_empty_calls_to_the_reference(monkeypatch):
    module = kernels.load("cpu", ops.spec("relu").kernels["cpu"])
    monkeypatch.setattr(module, "forward", lambda *a: pytest.fail("a kernel ran on an empty call"))
    out, _ = ops.relu.forward(np.zeros((0, 3), np.float32), backend="cpu")
    assert out.shape == (0, 3) and out.dtype == np.float32
    assert dispatch.is_empty((np.ones(2), (np.ones(1), np.zeros((2, 0)))))
    assert not dispatch.is_empty((np.ones(2), None, (np.ones(1),), 3))


def test_dispatch_rejects_an_unknown_step():
    with pytest.raises(ValueError, match="step"):
        dispatch.run("relu", "cpu", "sideways", None, ())


def _backends_here():
    from refvit.backend import cuda_available

    return ["numpy", "cpu"] + (["cuda"] if cuda_available() else [])


@pytest.mark.parametrize("name", ["na1d", "na2d"])
def test_neighbourhood_attention_caches_one_attn_layout_on_every_backend(name, rng):
    """``Cache.attn`` is ``(B, heads, *spatial, prod(kernel))`` on every backend, with equal values."""
    spec = ops.spec(name)
    arguments = _bound_example(spec, rng)
    spatial = arguments["q"].shape[2:-1]
    slots = int(np.prod(np.broadcast_to(arguments["kernel_size"], (len(spatial),))))
    attns = []
    for backend in _backends_here():
        _, cache = spec.module.forward(**arguments, backend=backend)
        attn = cache.attn if isinstance(cache.attn, np.ndarray) else cache.attn.copy_to_host()
        assert attn.shape == arguments["q"].shape[:-1] + (slots,), backend
        attns.append(attn)
    for attn in attns[1:]:
        np.testing.assert_allclose(attn, attns[0], rtol=1e-10, atol=1e-12)
