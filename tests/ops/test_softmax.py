"""softmax: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import layouts, random_array, seeds, shapes
from tests.conftest import tolerance

ALL_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@st.composite
def shape_and_axis(draw, max_dims=3):
    shape = draw(shapes(max_dims=max_dims))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, axis


@pytest.mark.parametrize("axis", [0, -1])  # axis 1 is the op's example (test_contract.py)
def test_gradcheck(rng, axis):
    x = rng.standard_normal((3, 4, 2)) * 2
    gradcheck(ops.softmax, (x,), dict(axis=axis))


@given(shape_axis=shape_and_axis(), seed=seeds())
def test_vjp(shape_axis, seed):
    shape, axis = shape_axis
    check_vjp(ops.softmax, (random_array(shape, seed, scale=2.0),), dict(axis=axis))


def test_backends_match_numpy_along_the_last_axis(kernel_backend, dtype, rng):
    x = rng.standard_normal((2, 3, 5)) * 3
    check_backends(ops.softmax, (x,), dict(axis=-1), backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@given(shape_axis=shape_and_axis(), seed=seeds(), layout=layouts())
def test_cpu_accepts_any_layout(shape_axis, seed, layout):
    shape, axis = shape_axis
    x = random_array(shape, seed, layout=layout)
    expected, _ = ops.softmax.forward(np.ascontiguousarray(x), axis=axis, backend="numpy")
    assert_close(ops.softmax.forward(x, axis=axis, backend="cpu")[0], expected)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape_axis=shape_and_axis(), seed=seeds(), shift=st.floats(-1e3, 1e3))
def test_rows_sum_to_one_and_shift_invariance(backend, shape_axis, seed, shift):
    shape, axis = shape_axis
    x = random_array(shape, seed, scale=5.0)
    y, _ = ops.softmax.forward(x, axis=axis, backend=backend)
    assert np.all(y >= 0.0)
    row_sums = np.atleast_1d(y.sum(axis=axis))
    assert_close(row_sums, np.ones_like(row_sums), rtol=1e-12, atol=1e-12)
    shifted, _ = ops.softmax.forward(x + shift, axis=axis, backend=backend)
    assert_close(shifted, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_huge_and_infinite_logits(backend, dtype_):
    x = np.array([[1e4, 0.0, -1e4], [-np.inf, 0.0, 0.0], [-np.inf, -np.inf, -np.inf], [3e4, 3e4, -np.inf]],
                 dtype=dtype_)
    with np.errstate(invalid="ignore"):
        y, _ = ops.softmax.forward(x, backend=backend)
    assert isinstance(y, np.ndarray) and y.dtype == dtype_
    assert_close(y[0], np.array([1.0, 0.0, 0.0], dtype_))
    assert_close(y[1], np.array([0.0, 0.5, 0.5], dtype_))
    assert np.all(np.isnan(y[2]))
    assert_close(y[3], np.array([0.5, 0.5, 0.0], dtype_))


def test_matches_torch(rng):
    import torch
    x = rng.standard_normal((3, 4, 5)) * 4
    g = rng.standard_normal(x.shape)
    for axis in range(3):
        y, cache = ops.softmax.forward(x, axis=axis)
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.softmax(xt, dim=axis)
        yt.backward(torch.tensor(g))
        assert_close(y, yt.detach().numpy())
        assert_close(ops.softmax.backward(g, cache)[0], xt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    with pytest.raises(ValueError, match="softmax: 'x'"):
        ops.softmax.forward(np.zeros(()), backend=backend)
    for axis in (2, -3):
        with pytest.raises(ValueError, match="softmax: 'axis'"):
            ops.softmax.forward(np.zeros((2, 3)), axis=axis, backend=backend)
    with pytest.raises(TypeError, match="softmax: 'axis'"):
        ops.softmax.forward(np.zeros((2, 3)), axis=1.0, backend=backend)


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x = rng.standard_normal((2, 4))
    y, cache = ops.softmax.forward(cuda.to_device(x), backend="cuda")
    (dx,) = ops.softmax.backward(cuda.to_device(np.ones_like(x)), cache)
    assert not isinstance(y, np.ndarray) and not isinstance(dx, np.ndarray)
    assert_close(y.copy_to_host(), ops.softmax.forward(x, backend="numpy")[0])
    assert_close(dx.copy_to_host(), np.zeros_like(x), atol=1e-12)


def test_cpu_float32_rows_are_rounded_once_from_float64(rng):
    """float32 along the last axis takes the vectorised-exp rows: within an ulp of the float64 softmax."""
    x = (rng.standard_normal((130, 197)) * 8).astype(np.float32)   # more rows than one task
    y, _ = ops.softmax.forward(x, backend="cpu")
    exact, _ = ops.softmax.forward(x.astype(np.float64), backend="numpy")
    assert y.dtype == np.float32
    assert np.all(np.abs(y - exact) <= 1.5 * np.spacing(exact.astype(np.float32)) + 1e-45)
