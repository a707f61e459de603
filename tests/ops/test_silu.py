"""silu: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import warnings

import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import assert_close
from refvit.testing.strategies import random_array, seeds, shapes

ALL_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SPECIAL_VALUES = [-np.inf, -1000.0, 0.0, 1000.0, np.inf, np.nan]


@given(shape=shapes(max_dims=3), seed=seeds())
def test_silu_is_x_times_sigmoid(shape, seed):
    x = random_array(shape, seed, scale=4.0)
    out, _ = ops.silu.forward(x, backend="numpy")
    assert_close(out, x * ops.sigmoid.forward(x, backend="numpy")[0])
    assert_close(out - ops.silu.forward(-x, backend="numpy")[0], x)  # silu(x) - silu(-x) = x


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_large_finite_inputs_give_no_warnings(backend):
    x = np.array([-1e300, -1000.0, -50.0, 50.0, 1000.0, 1e300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = ops.silu.forward(x, backend=backend)
        (dx,) = ops.silu.backward(np.ones_like(x), cache)
    assert_close(out, np.array([0.0, 0.0, -50.0 * np.exp(-50.0), 50.0, 1000.0, 1e300]), rtol=1e-12, atol=0.0)
    assert_close(dx, np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), rtol=0.0, atol=1e-15)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the CUDA simulator's scalar -inf * 0
def test_special_values_follow_pytorch(backend):
    x = np.array(SPECIAL_VALUES)
    with np.errstate(invalid="ignore"):
        out, cache = ops.silu.forward(x, backend=backend)
        (dx,) = ops.silu.backward(np.ones_like(x), cache)
    # -inf * sigmoid(-inf) = -inf * 0 is NaN in PyTorch too, and so is the gradient at +-inf
    assert_close(out, np.array([np.nan, 0.0, 0.0, 1000.0, np.inf, np.nan]))
    assert_close(dx, np.array([np.nan, 0.0, 0.5, 1.0, np.nan, np.nan]))


def test_matches_torch_with_special_values():
    import torch
    x = np.array(SPECIAL_VALUES + [-3.5, 0.7, 12.0])
    dout = np.linspace(-2.0, 2.0, x.size)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.silu(xt)
    yt.backward(torch.tensor(dout))
    with np.errstate(invalid="ignore"):
        out, cache = ops.silu.forward(x, backend="numpy")
        (dx,) = ops.silu.backward(dout, cache)
    assert_close(out, yt.detach().numpy())
    assert_close(dx, xt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dim_input_keeps_its_shape(backend):
    x = np.array(0.75)
    out, cache = ops.silu.forward(x, backend=backend)
    (dx,) = ops.silu.backward(np.array(1.0), cache)
    assert out.shape == () and dx.shape == () and isinstance(out, np.ndarray)
    assert_close(out.reshape(1), ops.silu.forward(x.reshape(1), backend="numpy")[0])
