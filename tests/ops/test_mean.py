"""mean: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import valid_tuple_axes

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import layouts, random_array, seeds, shapes
from tests.conftest import tolerance

AXES = [None, 0, -1, (0, 2), (-3, -1), (), [1]]


@st.composite
def shapes_and_axes(draw, max_dims=4):
    """A shape, an ``axis`` argument for it (None, an int or a tuple, negatives included) and ``keepdims``."""
    shape = draw(shapes(min_dims=1, max_dims=max_dims, max_side=5))
    ndim = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1), valid_tuple_axes(ndim)))
    return shape, axis, draw(st.booleans())


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
def test_gradcheck(rng, axis, keepdims):
    gradcheck(ops.mean, (rng.standard_normal((2, 3, 4)), axis), dict(keepdims=keepdims))


@given(case=shapes_and_axes(), seed=seeds())
def test_vjp(case, seed):
    shape, axis, keepdims = case
    check_vjp(ops.mean, (random_array(shape, seed), axis), dict(keepdims=keepdims))


@pytest.mark.parametrize("axis, keepdims", [(-1, True), (None, True), (0, False)])  # (1, 2): test_contract.py
def test_backends_match_numpy(kernel_backend, dtype, rng, axis, keepdims):
    x = rng.standard_normal((2, 3, 4, 5))
    check_backends(ops.mean, (x, axis), dict(keepdims=keepdims), backend=kernel_backend, dtype=dtype,
                   **tolerance(dtype))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(case=shapes_and_axes(), seed=seeds(), layout=layouts())
def test_equals_np_mean_and_gradient_is_dout_over_count(backend, case, seed, layout):
    shape, axis, keepdims = case
    x = random_array(shape, seed, layout=layout)
    out, cache = ops.mean.forward(x, axis, keepdims, backend=backend)
    expected = np.mean(x, axis=axis, keepdims=keepdims)
    assert isinstance(out, np.ndarray) and out.shape == np.shape(expected)
    assert_close(out, expected, rtol=1e-12, atol=1e-12)
    dout = random_array(out.shape, seed + 1).reshape(out.shape)
    (dx,) = ops.mean.backward(dout, cache)
    count = x.size // max(out.size, 1)
    kept = np.reshape(dout, np.shape(np.mean(x, axis=axis, keepdims=True)))
    assert_close(dx, np.broadcast_to(kept / count, shape), rtol=1e-12, atol=1e-12)
    # the adjoint: summing dx back over the reduced axes gives dout
    assert_close(np.sum(dx, axis=axis, keepdims=keepdims), dout, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_mean_of_everything_is_0d_and_known_values(backend):
    x = np.arange(24.0).reshape(2, 3, 4)
    out, cache = ops.mean.forward(x, None, backend=backend)
    assert out.shape == () and float(out) == 11.5
    (dx,) = ops.mean.backward(np.array(48.0), cache)
    assert_close(dx, np.full((2, 3, 4), 2.0))
    out, _ = ops.mean.forward(x, (0, -1), keepdims=True, backend=backend)
    assert_close(out, np.array([[[7.5], [11.5], [15.5]]]))  # row j: 6 + 4 j + 1.5


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_mean_over_no_elements_is_nan(backend):
    out, cache = ops.mean.forward(np.zeros((3, 0)), 1, backend=backend)
    assert out.shape == (3,) and np.all(np.isnan(out))
    assert ops.mean.backward(np.ones(3), cache)[0].shape == (3, 0)


@pytest.mark.cuda
def test_cuda_device_arrays_in_device_arrays_out(rng):
    from numba import cuda

    x = rng.standard_normal((2, 3, 4))
    out, cache = ops.mean.forward(cuda.to_device(x), (0, 2), backend="cuda")
    assert not isinstance(out, np.ndarray)
    assert_close(out.copy_to_host(), x.mean(axis=(0, 2)))
    (dx,) = ops.mean.backward(cuda.to_device(np.ones(3)), cache)
    assert not isinstance(dx, np.ndarray)
    assert_close(dx.copy_to_host(), np.full((2, 3, 4), 1.0 / 8.0))


def test_matches_torch(rng):
    import torch
    x = rng.standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x, requires_grad=True)
    dout = rng.standard_normal((2, 1, 1, 5))
    xt.mean(dim=(1, 2), keepdim=True).backward(torch.tensor(dout))
    out, cache = ops.mean.forward(x, (1, 2), keepdims=True, backend="numpy")
    assert_close(out, xt.mean(dim=(1, 2), keepdim=True).detach().numpy())
    assert_close(ops.mean.backward(dout, cache)[0], xt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"mean: 'axis' must be distinct axes; got \(1, -2\)"):
        ops.mean.forward(x, (1, -2), backend=backend)
    with pytest.raises(ValueError, match=r"mean: 'axis' must be axes in \[-3, 2\] for a 3-D 'x'; got 3"):
        ops.mean.forward(x, 3, backend=backend)
    with pytest.raises(ValueError, match="mean: 'axis'"):
        ops.mean.forward(x, (0, -4), backend=backend)
    with pytest.raises(TypeError, match="mean: 'axis' must be an integer, a tuple of integers or None"):
        ops.mean.forward(x, 1.0, backend=backend)
    with pytest.raises(TypeError, match="mean: 'axis'"):
        ops.mean.forward(x, (0, True), backend=backend)
    with pytest.raises(TypeError, match="mean: 'keepdims' must be a bool"):
        ops.mean.forward(x, 0, keepdims=1, backend=backend)
    _, cache = ops.mean.forward(x, 1, backend=backend)
    with pytest.raises(ValueError, match=r"mean: 'dout' must be of the output's shape \(2, 4\)"):
        ops.mean.backward(np.zeros((2, 1, 4)), cache)  # the keepdims shape is not the output's
