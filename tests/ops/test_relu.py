"""relu: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import assert_close, check_backends
from refvit.testing.strategies import random_array, seeds, shapes
from tests.conftest import tolerance

SPECIAL_VALUES = [-np.inf, -2.0, -0.0, 0.0, 0.5, np.inf, np.nan]


def test_backends_match_numpy_at_the_kink(kernel_backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :3] = 0.0  # the kink itself: gradient 0 on every backend
    check_backends(ops.relu, (x,), backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@given(shape=shapes(max_dims=3), seed=seeds())
def test_relu_splits_x_into_positive_and_negative_parts(shape, seed):
    x = random_array(shape, seed)
    positive, _ = ops.relu.forward(x, backend="numpy")
    negative, _ = ops.relu.forward(-x, backend="numpy")
    assert_close(positive - negative, x)
    assert np.all(positive >= 0.0)
    assert_close(ops.relu.forward(positive, backend="numpy")[0], positive)  # idempotent


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_special_values_follow_pytorch(backend):
    x = np.array(SPECIAL_VALUES)
    out, cache = ops.relu.forward(x, backend=backend)
    assert_close(out, np.array([0.0, 0.0, 0.0, 0.0, 0.5, np.inf, np.nan]))
    (dx,) = ops.relu.backward(np.full_like(x, 3.0), cache)
    # gradient 0 at x == 0 and below; NaN keeps its gradient (PyTorch zeroes only where out <= 0)
    assert_close(dx, np.array([0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0]))


def test_matches_torch_with_special_values():
    import torch
    x = np.array(SPECIAL_VALUES + [1.5, -3.0])
    dout = np.arange(1.0, x.size + 1.0)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(dout))
    out, cache = ops.relu.forward(x, backend="numpy")
    assert_close(out, yt.detach().numpy())
    assert_close(ops.relu.backward(dout, cache)[0], xt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    with pytest.raises(TypeError, match="relu: 'x'"):
        ops.relu.forward(None, backend=backend)
    _, cache = ops.relu.forward(np.zeros((2, 3)), backend=backend)
    with pytest.raises(ValueError, match="relu: 'dout'"):  # the same size, another shape
        ops.relu.backward(np.zeros((3, 2)), cache)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dim_input_keeps_its_shape(backend):
    x = np.array(0.75)
    out, cache = ops.relu.forward(x, backend=backend)
    (dx,) = ops.relu.backward(np.array(1.0), cache)
    assert out.shape == () and dx.shape == () and isinstance(out, np.ndarray)
    assert_close(out.reshape(1), ops.relu.forward(x.reshape(1), backend="numpy")[0])
