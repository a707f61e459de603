"""sigmoid: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import warnings

import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import assert_close
from refvit.testing.strategies import random_array, seeds, shapes

ALL_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SPECIAL_VALUES = [-np.inf, -1000.0, -0.0, 0.0, 1000.0, np.inf, np.nan]


@given(shape=shapes(max_dims=3), seed=seeds())
def test_symmetry_and_range(shape, seed):
    x = random_array(shape, seed, scale=5.0)
    out, _ = ops.sigmoid.forward(x, backend="numpy")
    mirrored, _ = ops.sigmoid.forward(-x, backend="numpy")
    assert_close(out + mirrored, np.ones_like(x))
    assert np.all((out > 0.0) & (out < 1.0))
    assert_close(out, 1.0 / (1.0 + np.exp(-x)))  # the textbook form, where it does not overflow


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_large_magnitudes_without_warnings(backend, dtype):
    big = np.finfo(dtype).max
    x = np.array([-big, -1000.0, -100.0, -30.0, 30.0, 100.0, 1000.0, big], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = ops.sigmoid.forward(x, backend=backend)
        (dx,) = ops.sigmoid.backward(np.ones_like(x), cache)
    expected = np.array([0.0, 0.0, np.exp(-100.0), np.exp(-30.0) / (1 + np.exp(-30.0)),
                         1 / (1 + np.exp(-30.0)), 1.0, 1.0, 1.0])
    assert_close(out, expected.astype(dtype), rtol=1e-6, atol=0.0)
    assert np.all(np.isfinite(dx)) and np.all(dx >= 0.0)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_special_values_follow_pytorch(backend):
    x = np.array(SPECIAL_VALUES)
    out, cache = ops.sigmoid.forward(x, backend=backend)
    assert_close(out, np.array([0.0, 0.0, 0.5, 0.5, 1.0, 1.0, np.nan]))
    (dx,) = ops.sigmoid.backward(np.ones_like(x), cache)
    assert_close(dx, np.array([0.0, 0.0, 0.25, 0.25, 0.0, 0.0, np.nan]))


def test_matches_torch_with_special_values():
    import torch
    x = np.array(SPECIAL_VALUES + [-3.5, 0.7, 12.0])
    dout = np.linspace(-2.0, 2.0, x.size)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.sigmoid(xt)
    yt.backward(torch.tensor(dout))
    out, cache = ops.sigmoid.forward(x, backend="numpy")
    assert_close(out, yt.detach().numpy())
    assert_close(ops.sigmoid.backward(dout, cache)[0], xt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    with pytest.raises(TypeError, match="sigmoid: 'x'"):
        ops.sigmoid.forward(np.zeros(3, dtype=np.complex128), backend=backend)
    with pytest.raises(TypeError, match="sigmoid: 'x'"):
        ops.sigmoid.forward("x", backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dim_input_keeps_its_shape(backend):
    x = np.array(0.75)
    out, cache = ops.sigmoid.forward(x, backend=backend)
    (dx,) = ops.sigmoid.backward(np.array(1.0), cache)
    assert out.shape == () and dx.shape == () and isinstance(out, np.ndarray)
    assert_close(out.reshape(1), ops.sigmoid.forward(x.reshape(1), backend="numpy")[0])
