"""The ``nano op`` bench cases: their inputs, their PyTorch equivalents, and when they run."""
import numpy as np
import pytest
import torch

from refvit import ops
from refvit.bench import ON_REQUEST, cases_ops_nano, collect_cases, runner

NAMES = [
    "nano op gelu (64,16,16,32)", "nano op gelu (64,8,8,96)", "nano op gelu (64,4,4,256)",
    "nano op layer_norm (64,8,8,32)", "nano op layer_norm (64,16,16,32)",
    "nano op linear (64,8,8,32)->96", "nano op linear (64,8,8,96)->32", "nano op linear_gelu (64,8,8,32)->96",
]


def test_the_cases_and_their_shapes():
    assert [case.name for case in cases_ops_nano.CASES] == NAMES
    for case in cases_ops_nano.CASES:
        args, _ = case.make(np.random.default_rng(0), np.float32)
        shape = "(" + ",".join(str(n) for n in args[0].shape) + ")"
        out = f"->{args[1].shape[0]}" if case.op in ("linear", "linear_gelu") else ""
        assert case.name == f"nano op {case.op} {shape}{out}"
        assert all(a.dtype == np.float32 for a in args)
        assert ON_REQUEST in case.tags and case.torch_forward is not None


@pytest.mark.parametrize("name", NAMES)
def test_pytorch_computes_what_the_op_computes(name):
    (case,) = [c for c in cases_ops_nano.CASES if c.name == name]
    args, kwargs = case.make(np.random.default_rng(1), np.float32)
    expected, _ = getattr(ops, case.op).forward(*args, **kwargs, backend="numpy")
    with torch.no_grad():
        got = case.torch_forward(args, kwargs)().numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_they_run_only_when_a_filter_names_them():
    every = collect_cases()
    assert not set(NAMES) & {c.name for c in runner.selected_cases(every, None)}
    assert [c.name for c in runner.selected_cases(every, "nano op")] == NAMES
    assert "nano op gelu (64,8,8,96)" in {c.name for c in runner.selected_cases(every, "gelu")}
    assert any(c.name == "gelu (8,56,56,64)" for c in runner.selected_cases(every, None))
