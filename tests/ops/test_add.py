"""add: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp
from refvit.testing.strategies import layouts, random_array, seeds
from tests.conftest import tolerance
from tests.ops._broadcast import scatter_sum, shape_pairs


@given(shapes=shape_pairs(), seed=seeds())
def test_vjp(shapes, seed):
    a_shape, b_shape = shapes.input_shapes
    check_vjp(ops.add, (random_array(a_shape, seed), random_array(b_shape, seed + 1)))


@pytest.mark.parametrize("a_shape, b_shape", [((1, 4), (3, 1, 1)), ((5,), (5,))])
def test_backends_match_numpy_when_both_sides_broadcast(kernel_backend, dtype, rng, a_shape, b_shape):
    args = (rng.standard_normal(a_shape), rng.standard_normal(b_shape))
    check_backends(ops.add, args, backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@given(shapes=shape_pairs(), seed=seeds(), a_layout=layouts(), b_layout=layouts())
def test_cpu_matches_numpy_for_any_shapes_and_layouts(shapes, seed, a_layout, b_layout):
    a_shape, b_shape = shapes.input_shapes
    a = random_array(a_shape, seed, layout=a_layout)
    b = random_array(b_shape, seed + 1, layout=b_layout)
    out, cache = ops.add.forward(a, b, backend="cpu")
    assert_close(out, np.asarray(a + b).reshape(shapes.result_shape))
    dout = random_array(shapes.result_shape, seed + 2)
    da, db = ops.add.backward(dout, cache)
    assert da.shape == a_shape and db.shape == b_shape
    assert_close(da, scatter_sum(dout, a_shape), rtol=1e-12, atol=1e-12)
    assert_close(db, scatter_sum(dout, b_shape), rtol=1e-12, atol=1e-12)


@given(shapes=shape_pairs(), seed=seeds())
def test_gradient_is_the_sum_over_broadcast_positions(shapes, seed):
    a_shape, b_shape = shapes.input_shapes
    _, cache = ops.add.forward(random_array(a_shape, seed), random_array(b_shape, seed + 1), backend="numpy")
    dout = random_array(shapes.result_shape, seed + 2)
    da, db = ops.add.backward(dout, cache)
    assert isinstance(da, np.ndarray) and da.shape == a_shape and db.shape == b_shape
    assert_close(da, scatter_sum(dout, a_shape), rtol=1e-12, atol=1e-12)
    assert_close(db, scatter_sum(dout, b_shape), rtol=1e-12, atol=1e-12)


@given(shapes=shape_pairs(), seed=seeds())
def test_commutative(shapes, seed):
    a = random_array(shapes.input_shapes[0], seed)
    b = random_array(shapes.input_shapes[1], seed + 1)
    ab, cache_ab = ops.add.forward(a, b, backend="numpy")
    ba, cache_ba = ops.add.forward(b, a, backend="numpy")
    np.testing.assert_array_equal(ab, ba)
    dout = random_array(np.shape(ab), seed + 2)
    da, db = ops.add.backward(dout, cache_ab)
    db_swapped, da_swapped = ops.add.backward(dout, cache_ba)
    np.testing.assert_array_equal(da, da_swapped)
    np.testing.assert_array_equal(db, db_swapped)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shapes=shape_pairs(), seed=seeds())
def test_adding_zeros_that_broadcast_into_a_is_identity(backend, shapes, seed):
    a_shape, b_shape = shapes.input_shapes
    a = random_array(shapes.result_shape, seed)  # zeros of b's shape broadcast into a
    out, _ = ops.add.forward(a, np.zeros(b_shape), backend=backend)
    np.testing.assert_array_equal(out, a)


@pytest.mark.cuda
def test_cuda_device_arrays_in_device_arrays_out(rng):
    from numba import cuda

    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 1))
    out, cache = ops.add.forward(cuda.to_device(a), cuda.to_device(b), backend="cuda")
    assert not isinstance(out, np.ndarray)
    assert_close(out.copy_to_host(), a + b)
    dout = rng.standard_normal((2, 3, 4))
    da, db = ops.add.backward(cuda.to_device(dout), cache)
    assert not isinstance(db, np.ndarray) and db.shape == (3, 1)
    assert_close(da.copy_to_host(), dout)
    assert_close(db.copy_to_host(), dout.sum(axis=(0, 2))[:, None])


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_zero_dim_inputs(backend):
    out, cache = ops.add.forward(np.array(1.5), np.array(2.0), backend=backend)
    da, db = ops.add.backward(np.array(3.0), cache)
    assert out.shape == da.shape == db.shape == ()
    assert float(out) == 3.5 and float(da) == 3.0 and float(db) == 3.0


def test_matches_torch_broadcast_gradients(rng):
    import torch
    a, b = rng.standard_normal((2, 1, 4)), rng.standard_normal((3, 1))
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    dout = rng.standard_normal((2, 3, 4))
    (at + bt).backward(torch.tensor(dout))
    _, cache = ops.add.forward(a, b, backend="numpy")
    da, db = ops.add.backward(dout, cache)
    assert_close(da, at.grad.numpy())
    assert_close(db, bt.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    with pytest.raises(ValueError, match=r"add: 'a, b' must be shapes that broadcast together; got shapes \(2, 3\) and \(4,\)"):
        ops.add.forward(np.zeros((2, 3)), np.zeros(4), backend=backend)
    with pytest.raises(TypeError, match="add: 'b'"):
        ops.add.forward(np.zeros(3), "b", backend=backend)
    _, cache = ops.add.forward(np.zeros((2, 3)), np.zeros(3), backend=backend)
    with pytest.raises(ValueError, match=r"add: 'dout' must be of the output's shape \(2, 3\)"):
        ops.add.backward(np.zeros(3), cache)  # b's shape broadcasts to the output's, but is not it
