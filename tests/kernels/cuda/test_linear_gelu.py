"""kernels/cuda/linear_gelu.py: linear's and gelu's kernels in turn, against the NumPy reference (under the
simulator in CI: tiny shapes)."""
import numpy as np
import pytest

from refvit import kernels, ops
from refvit.testing import assert_close, to_numpy
from tests.conftest import tolerance


@pytest.mark.cuda
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_entries_match_the_numpy_reference(rng, dtype, approximate, with_bias):
    module = kernels.load("cuda", "linear_gelu")
    x = rng.standard_normal((2, 3, 5)).astype(dtype)
    weight = rng.standard_normal((4, 5)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype) if with_bias else None
    dout = rng.standard_normal((2, 3, 4)).astype(dtype)
    tanh_approx = approximate == "tanh"
    y, pre_activation = module.forward(x, weight, bias, tanh_approx)
    expected_y, expected_pre_activation = ops.linear_gelu._forward_numpy(x, weight, bias, approximate)
    assert y.shape == expected_y.shape and y.dtype == dtype
    assert_close(y, expected_y, **tolerance(dtype))
    assert_close(pre_activation, expected_pre_activation, **tolerance(dtype))
    grads = module.backward(dout, x, weight, pre_activation, tanh_approx)
    expected = ops.linear_gelu._backward_numpy(dout, x, weight, expected_pre_activation, approximate)
    for got, want in zip(grads, expected):
        assert_close(to_numpy(got), want, **tolerance(dtype))
