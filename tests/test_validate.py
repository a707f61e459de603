import numpy as np
import pytest

from refvit import _validate as v


def test_check_array_types_and_rank():
    assert v.check_array("op", "x", [1, 2], "numpy").dtype == np.float64
    with pytest.raises(TypeError, match="op: 'x' must be a NumPy array; got str"):
        v.check_array("op", "x", "nope", "cpu")
    with pytest.raises(TypeError, match="op: 'x' must be a float32 or float64 array; got array of shape \\(2,\\) and dtype complex128"):
        v.check_array("op", "x", np.zeros(2, complex), "cpu")
    with pytest.raises(ValueError, match="op: 'x' must be a 3-D array; got 2-D shape \\(2, 2\\)"):
        v.check_array("op", "x", np.zeros((2, 2)), "cpu", ndim=3)


def test_mixed_dtypes_name_every_array():
    with pytest.raises(TypeError, match="q=float32, k=float64"):
        v.check_same_dtype("attention", q=np.zeros(1, np.float32), k=np.zeros(1), bias=None)
    assert v.check_same_dtype("op", a=np.zeros(1), b=None) == np.float64


def test_int_and_tuple_checks():
    assert v.as_tuple("na2d", "kernel_size", 3, 2, minimum=1, odd=True) == (3, 3)
    assert v.as_tuple("na2d", "dilation", [1, 2], 2, minimum=1) == (1, 2)
    with pytest.raises(ValueError, match="na2d: 'kernel_size' must be an odd integer >= 1; got 4"):
        v.as_tuple("na2d", "kernel_size", 4, 2, minimum=1, odd=True)
    with pytest.raises(ValueError, match="a sequence of 2 integers"):
        v.as_tuple("na2d", "kernel_size", (3, 3, 3), 2)
    with pytest.raises(TypeError, match="must be an integer; got bool"):
        v.check_int("op", "groups", True)
    with pytest.raises(ValueError, match="op: 'stride' must be an integer >= 1 and <= 3; got 5"):
        v.check_int("op", "stride", 5, minimum=1, maximum=3)


def test_scale_rule():
    assert v.check_scale("op", None, 16) == 0.25
    assert v.check_scale("op", 0.0, 16) == 0.0
    with pytest.raises(TypeError, match="'scale' must be a real number or None"):
        v.check_scale("op", "big", 16)


def test_shape_and_grad_checks():
    with pytest.raises(ValueError, match="op: 'w' must be of shape \\(3, \\*\\); got shape \\(2, 2\\)"):
        v.check_shape("op", "w", np.zeros((2, 2)), (3, None))
    like = np.zeros((2, 3))
    with pytest.raises(ValueError, match="op: 'dout' must be of the output's shape"):
        v.check_grad("op", np.zeros(3), like)
    with pytest.raises(TypeError, match="op: 'dout' must be an array"):
        v.check_grad("op", None, like)
