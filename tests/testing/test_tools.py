"""The checking tools must catch wrong answers, not only accept right ones."""
import types

import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import GradcheckError, assert_close, check_backends, check_vjp, gradcheck, relative_error
from refvit.testing.strategies import layouts, random_array, seeds, shapes, with_layout


def _square_op(gradient_factor):
    """y = x**2 with backward 2*x*gradient_factor (wrong unless the factor is 1)."""

    def forward(x, backend=None):
        return x * x, x

    def backward(dout, x):
        return (gradient_factor * 2.0 * x * dout,)

    return types.SimpleNamespace(forward=forward, backward=backward, DIFFERENTIABLE=("x",), __name__="square")


def test_gradcheck_accepts_right_and_rejects_wrong_gradient():
    x = np.linspace(-1, 1, 7)
    assert gradcheck(_square_op(1.0), (x,))["x"] < 1e-8
    with pytest.raises(GradcheckError, match="square: gradient of 'x' has relative error"):
        gradcheck(_square_op(1.001), (x,))


def test_check_vjp_rejects_wrong_gradient():
    x = np.linspace(-1, 1, 7)
    assert check_vjp(_square_op(1.0), (x,))["x"] < 1e-7
    with pytest.raises(GradcheckError, match="dot-product test"):
        check_vjp(_square_op(0.9), (x,))


def test_gradcheck_detects_wrong_number_of_gradients():
    op = _square_op(1.0)
    op.backward = lambda dout, cache: ()
    with pytest.raises(GradcheckError, match="one per input"):
        gradcheck(op, (np.ones(3),))


def test_gradcheck_rejects_unknown_wrt():
    with pytest.raises(ValueError, match="'wrt' names"):
        gradcheck(ops.gelu, (np.ones(3),), wrt=("y",))


def test_gradcheck_does_not_modify_inputs():
    x = np.linspace(-1, 1, 5)
    before = x.copy()
    gradcheck(ops.gelu, (x,))
    np.testing.assert_array_equal(x, before)


def test_assert_close_reports_where_and_how_much():
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2] = 0.5
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, name="thing")
    message = str(info.value)
    assert "thing: 1 of 6 elements differ" in message
    assert "index (1, 2)" in message and "5.000e-01" in message


def test_assert_close_shapes_nan_and_inf():
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.zeros(2), np.zeros(3))
    assert_close(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.inf]), np.array([-np.inf]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan]), np.array([np.nan]), equal_nan=False)


def test_check_backends_catches_a_wrong_backend():
    def forward(x, backend=None):
        return (x + (1e-3 if backend == "cpu" else 0.0)), backend

    op = types.SimpleNamespace(forward=forward, backward=lambda d, c: (d,), DIFFERENTIABLE=("x",), __name__="shift")
    with pytest.raises(AssertionError, match="shift output 0 \\(cpu vs numpy\\)"):
        check_backends(op, (np.zeros(4),), backend="cpu")


def test_relative_error_zero_and_scale():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0]), np.array([2.0])) == pytest.approx(0.5)


@given(shape=shapes(max_dims=3), seed=seeds(), layout=layouts())
def test_layouts_keep_values(shape, seed, layout):
    x = random_array(shape, seed)
    y = with_layout(x, layout)
    np.testing.assert_array_equal(x, y)
    if layout == "strided" and x.size > 1:
        assert not y.flags.c_contiguous


def test_assert_close_zero_dimensional():
    assert_close(np.array(1.5), np.array(1.5))
    with pytest.raises(AssertionError, match="1 of 1 elements differ"):
        assert_close(np.array(1.0), np.array(2.0))


def test_to_numpy_of_tensors_and_parameters():
    from refvit import Tensor
    from refvit.nn import Parameter
    from refvit.testing import to_numpy

    values = np.arange(3.0)
    assert to_numpy(Tensor(values)) is not None and np.array_equal(to_numpy(Tensor(values)), values)
    assert np.array_equal(to_numpy(Parameter(values)), values)


def test_check_module_gradients_accepts_right_and_rejects_wrong_backward():
    from refvit import nn as refvit_nn
    from refvit.testing import check_module_gradients

    rng = np.random.default_rng(0)
    model = refvit_nn.Sequential(refvit_nn.Linear(4, 5, dtype=np.float64), refvit_nn.GELU(),
                                 refvit_nn.Linear(5, 3, dtype=np.float64))
    x, upstream = rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    probes = [("input", (1, 2)), ("0.weight", (3, 1)), ("2.bias", (2,))]
    analytic, numeric = check_module_gradients(model, x, probes, upstream)
    assert len(analytic) == len(numeric) == 3
    original = ops.gelu.backward
    try:
        ops.gelu.backward = lambda dout, cache: (1.01 * original(dout, cache)[0],)
        with pytest.raises(GradcheckError, match="Sequential: probed gradients"):
            check_module_gradients(model, x, probes, upstream)
    finally:
        ops.gelu.backward = original


@pytest.mark.parametrize("layout", ["C", "F", "strided", "reversed"])
def test_zero_dimensional_arrays_keep_their_shape_in_every_layout(layout):
    assert random_array((), 3, layout=layout).shape == ()
    assert with_layout(np.array(2.5), layout).shape == ()
