"""The CSWin bench cases time the computation they name: their PyTorch equivalents equal refvit's
results, and the op-like block wrapper keeps the op contract (gradcheck through a whole block)."""
import numpy as np
import pytest

from refvit.bench import _cswin_block
from refvit.bench.cases_cswin import CASES
from refvit.bench.runner import resolve_op
from refvit.testing import assert_close, gradcheck


@pytest.mark.parametrize("case", [c for c in CASES if "stage 3" in c.name], ids=lambda c: c.name)
def test_torch_equivalent_matches(case):
    args, kwargs = case.make(np.random.default_rng(0), np.float64)
    out, _ = resolve_op(case.op).forward(*args, **kwargs, backend="cpu")
    assert_close(out, case.torch_forward(args, kwargs)().detach().numpy(), name=case.name)
    assert case.flops(args, kwargs) > 0


@pytest.mark.parametrize("last_stage", [False, True], ids=["two branches", "full map"])
def test_block_wrapper_gradcheck(rng, last_stage):
    x = rng.standard_normal((1, 2, 4, 8))
    errors = gradcheck(_cswin_block, (x, 2, 2), {"last_stage": last_stage})
    assert set(errors) == {"x"}
