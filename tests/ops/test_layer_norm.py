"""layer_norm: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import random_array, seeds, shapes
from tests.conftest import tolerance

AFFINE = [(True, True), (True, False), (False, True), (False, False)]


def _inputs(rng, shape, affine=(True, True)):
    x = rng.standard_normal(shape) * 2.0 + 0.5
    channels = shape[-1]
    weight = rng.standard_normal(channels) if affine[0] else None
    bias = rng.standard_normal(channels) if affine[1] else None
    return x, weight, bias


@pytest.mark.parametrize("affine", AFFINE[1:])  # weight and bias: the op's example (test_contract.py)
def test_gradcheck(rng, affine):
    gradcheck(ops.layer_norm, _inputs(rng, (2, 3, 4), affine))


@given(shape=shapes(max_dims=3, min_side=2), seed=seeds(), affine=st.sampled_from(AFFINE))
def test_vjp(shape, seed, affine):
    check_vjp(ops.layer_norm, _inputs(np.random.default_rng(seed), shape, affine))


def test_backends_match_numpy_without_weight_and_bias(kernel_backend, dtype, rng):
    args = _inputs(rng, (2, 3, 6), (False, False))
    check_backends(ops.layer_norm, args, dict(eps=1e-5), backend=kernel_backend, dtype=dtype, **tolerance(dtype))


def test_cpu_sums_parameter_gradients_over_many_row_blocks(rng):
    args = _inputs(rng, (3, 70, 5))  # 210 rows: more than one block of rows
    check_backends(ops.layer_norm, args, backend="cpu", dtype=np.float64, **tolerance(np.float64))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape=shapes(max_dims=3, min_side=2), seed=seeds(), shift=st.floats(-100, 100), scale=st.floats(0.1, 10))
def test_normalised_rows_and_affine_invariance(backend, shape, seed, shift, scale):
    x = random_array(shape, seed)
    y, _ = ops.layer_norm.forward(x, None, None, eps=0.0, backend=backend)
    assert_close(np.atleast_1d(y.mean(axis=-1)), np.zeros(shape[:-1] or (1,)), atol=1e-9)
    assert_close(np.atleast_1d(y.var(axis=-1)), np.ones(shape[:-1] or (1,)), atol=1e-9)
    moved, _ = ops.layer_norm.forward(x * scale + shift, None, None, eps=0.0, backend=backend)
    assert_close(moved, y, rtol=1e-6, atol=1e-6)


def test_matches_torch(rng):
    import torch
    x, weight, bias = _inputs(rng, (2, 5, 8))
    g = rng.standard_normal(x.shape)
    y, cache = ops.layer_norm.forward(x, weight, bias, eps=1e-5)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    yt = torch.nn.functional.layer_norm(tensors[0], (8,), tensors[1], tensors[2], 1e-5)
    yt.backward(torch.tensor(g))
    assert_close(y, yt.detach().numpy())
    for grad, t in zip(ops.layer_norm.backward(g, cache), tensors):
        assert_close(grad, t.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x, w, b = np.zeros((2, 4)), np.ones(4), np.zeros(4)
    with pytest.raises(ValueError, match="layer_norm: 'weight'"):
        ops.layer_norm.forward(x, np.ones(5), b, backend=backend)
    with pytest.raises(ValueError, match="layer_norm: 'bias'"):
        ops.layer_norm.forward(x, w, np.zeros((1, 4)), backend=backend)
    with pytest.raises(ValueError, match="layer_norm: 'x'"):
        ops.layer_norm.forward(np.zeros(()), None, None, backend=backend)
    with pytest.raises(ValueError, match="layer_norm: 'x'"):
        ops.layer_norm.forward(np.zeros((3, 0)), None, None, backend=backend)
    with pytest.raises(ValueError, match="layer_norm: 'eps'"):
        ops.layer_norm.forward(x, w, b, eps=-1e-5, backend=backend)
    with pytest.raises(TypeError, match="layer_norm: 'eps'"):
        ops.layer_norm.forward(x, w, b, eps="small", backend=backend)


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x, weight, bias = _inputs(rng, (3, 4))
    y, cache = ops.layer_norm.forward(*(cuda.to_device(a) for a in (x, weight, bias)), backend="cuda")
    grads = ops.layer_norm.backward(cuda.to_device(np.ones_like(x)), cache)
    expected_y, expected_cache = ops.layer_norm.forward(x, weight, bias, backend="numpy")
    assert_close(y.copy_to_host(), expected_y)
    for grad, expected in zip(grads, ops.layer_norm.backward(np.ones_like(x), expected_cache)):
        assert not isinstance(grad, np.ndarray)
        assert_close(grad.copy_to_host(), expected, atol=1e-12)
