"""tanh: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import assert_close
from refvit.testing.strategies import random_array, seeds, shapes

SPECIAL_VALUES = [-np.inf, -1000.0, -0.0, 0.0, 1000.0, np.inf, np.nan]


@given(shape=shapes(max_dims=3), seed=seeds())
def test_tanh_is_odd_and_a_rescaled_sigmoid(shape, seed):
    x = random_array(shape, seed, scale=3.0)
    out, _ = ops.tanh.forward(x, backend="numpy")
    assert_close(ops.tanh.forward(-x, backend="numpy")[0], -out)
    assert_close(out, 2.0 * ops.sigmoid.forward(2.0 * x, backend="numpy")[0] - 1.0, atol=1e-12, rtol=1e-10)
    assert np.all(np.abs(out) <= 1.0)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_special_values_follow_pytorch(backend):
    x = np.array(SPECIAL_VALUES)
    out, cache = ops.tanh.forward(x, backend=backend)
    assert_close(out, np.array([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0, np.nan]))
    (dx,) = ops.tanh.backward(np.ones_like(x), cache)
    assert_close(dx, np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, np.nan]))


def test_matches_torch_with_special_values():
    import torch
    x = np.array(SPECIAL_VALUES + [-2.5, 0.3, 7.0])
    dout = np.linspace(-2.0, 2.0, x.size)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tanh(xt)
    yt.backward(torch.tensor(dout))
    out, cache = ops.tanh.forward(x, backend="numpy")
    assert_close(out, yt.detach().numpy())
    assert_close(ops.tanh.backward(dout, cache)[0], xt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    with pytest.raises(TypeError, match="tanh: 'x'"):
        ops.tanh.forward(np.zeros(3, dtype=bool), backend=backend)
    _, cache = ops.tanh.forward(np.zeros((2, 3), dtype=np.float32), backend=backend)
    with pytest.raises(TypeError, match="tanh: 'dout'"):  # a float64 dout for a float32 forward
        ops.tanh.backward(np.zeros((2, 3)), cache)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dim_input_keeps_its_shape(backend):
    x = np.array(0.75)
    out, cache = ops.tanh.forward(x, backend=backend)
    (dx,) = ops.tanh.backward(np.array(1.0), cache)
    assert out.shape == () and dx.shape == () and isinstance(out, np.ndarray)
    assert_close(out.reshape(1), ops.tanh.forward(x.reshape(1), backend="numpy")[0])
