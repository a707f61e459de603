"""How ``apply`` binds an op's arguments: every way of passing them gives the same call, and a bad
call raises Python's own ``TypeError``."""
import numpy as np
import pytest

from refvit import ops
from refvit.autograd import Tensor, apply
from refvit.autograd import shape as _shape
from refvit.autograd.tape import _bind


@pytest.mark.parametrize("args, kwargs", [
    ((), {"x": 1, "axis": (0,)}),
    ((1,), {"axis": (0,)}),
    ((1, (0,)), {}),
    ((1,), {"keepdims": True, "axis": (0,)}),
    ((1, (0,), True), {}),
])
def test_arguments_come_back_in_the_order_of_the_parameters(args, kwargs):
    bound = _bind(ops.mean, args, kwargs)
    expected = dict(x=1, axis=(0,))
    if len(args) == 3 or "keepdims" in kwargs:
        expected["keepdims"] = True
    assert bound == expected
    assert list(bound) == [name for name in ("x", "axis", "keepdims", "backend") if name in bound]


@pytest.mark.parametrize("args, kwargs, message", [
    ((1,), {"x": 2}, "multiple values"),
    ((1, (0,)), {"axes": (0,)}, "unexpected keyword"),
    ((), {"axis": (0,)}, "missing a required argument"),
    ((1, (0,), True, None, 5), {}, "too many positional"),
])
def test_a_bad_call_raises_the_type_error_of_python(args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        _bind(ops.mean, args, kwargs)


def test_keywords_and_positions_record_the_same_op(rng):
    x = rng.standard_normal((2, 3, 4))
    results = []
    for args, kwargs in [((), {"shape": (4, 6), "x": None}), ((None,), {"shape": (4, 6)}), ((None, (4, 6)), {})]:
        t = Tensor(x, requires_grad=True)
        args = tuple(t if a is None else a for a in args)
        kwargs = {k: (t if v is None else v) for k, v in kwargs.items()}
        out = apply(_shape.reshape, *args, **kwargs)
        out.backward(np.arange(24.0).reshape(4, 6))
        results.append((out.data, t.grad, out.grad_fn))
    for data, grad, name in results[1:]:
        np.testing.assert_array_equal(data, results[0][0])
        np.testing.assert_array_equal(grad, results[0][1])
        assert name == results[0][2] == "reshape"
