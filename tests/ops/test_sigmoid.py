import warnings

import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import layouts, random_array, seeds, shapes
from tests.conftest import tolerance

ALL_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SPECIAL_VALUES = [-np.inf, -1000.0, -0.0, 0.0, 1000.0, np.inf, np.nan]


def test_gradcheck(rng):
    gradcheck(ops.sigmoid, (rng.standard_normal((3, 5)) * 3,))


@given(shape=shapes(max_dims=3), seed=seeds())
def test_vjp(shape, seed):
    check_vjp(ops.sigmoid, (random_array(shape, seed, scale=3.0),))


def test_backends_match_numpy(kernel_backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 4
    check_backends(ops.sigmoid, (x,), backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@given(shape=shapes(max_dims=3), seed=seeds(), layout=layouts())
def test_cpu_accepts_any_layout(shape, seed, layout):
    x = random_array(shape, seed, layout=layout)
    assert_close(ops.sigmoid.forward(x, backend="cpu")[0],
                 ops.sigmoid.forward(np.ascontiguousarray(x), backend="numpy")[0])


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
    torch = pytest.importorskip("torch")
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
    _, cache = ops.sigmoid.forward(np.zeros((2, 3)), backend=backend)
    with pytest.raises(ValueError, match="sigmoid: 'dout'"):
        ops.sigmoid.backward(np.zeros(6), cache)
    with pytest.raises(TypeError, match="sigmoid: 'dout'"):
        ops.sigmoid.backward(np.zeros((2, 3), dtype=np.float32), cache)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dim_input_keeps_its_shape(backend):
    x = np.array(0.75)
    out, cache = ops.sigmoid.forward(x, backend=backend)
    (dx,) = ops.sigmoid.backward(np.array(1.0), cache)
    assert out.shape == () and dx.shape == () and isinstance(out, np.ndarray)
    assert_close(out.reshape(1), ops.sigmoid.forward(x.reshape(1), backend="numpy")[0])
