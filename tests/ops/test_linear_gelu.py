"""linear_gelu: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py.
The cpu kernels against the cpu linear and gelu ops, bit for bit: tests/kernels/cpu/test_linear_gelu.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import dims, layouts, random_array, seeds, shapes
from tests.conftest import tolerance

APPROXIMATIONS = ("none", "tanh")


def _inputs(rng, batch_shape, in_features, out_features, with_bias=True):
    x = rng.standard_normal(tuple(batch_shape) + (in_features,))
    weight = rng.standard_normal((out_features, in_features))
    bias = rng.standard_normal(out_features) if with_bias else None
    return x, weight, bias


def _composed(x, weight, bias, approximate, dout, backend="numpy"):
    """``gelu(linear(x))`` of the two ops: the output and ``(dx, dweight, dbias)``."""
    hidden, linear_cache = ops.linear.forward(x, weight, bias, backend=backend)
    y, gelu_cache = ops.gelu.forward(hidden, approximate=approximate, backend=backend)
    (dhidden,) = ops.gelu.backward(dout, gelu_cache)
    return y, ops.linear.backward(dhidden, linear_cache)


# batch (2, 3) with a bias and the exact form is the op's example (test_contract.py)
@pytest.mark.parametrize("approximate", APPROXIMATIONS)
@pytest.mark.parametrize("batch_shape, with_bias", [((), True), ((), False), ((3,), False), ((2, 3), True)])
def test_gradcheck(rng, batch_shape, with_bias, approximate):
    gradcheck(ops.linear_gelu, _inputs(rng, batch_shape, 4, 3, with_bias), dict(approximate=approximate))


@given(batch_shape=shapes(min_dims=0, max_dims=3), in_features=dims(), out_features=dims(),
       with_bias=st.booleans(), approximate=st.sampled_from(APPROXIMATIONS), seed=seeds())
def test_vjp(batch_shape, in_features, out_features, with_bias, approximate, seed):
    rng = np.random.default_rng(seed)
    check_vjp(ops.linear_gelu, _inputs(rng, batch_shape, in_features, out_features, with_bias),
              dict(approximate=approximate))


@pytest.mark.parametrize("approximate", APPROXIMATIONS)
@pytest.mark.parametrize("batch_shape, with_bias", [((), True), ((2, 3), False)])
def test_backends_match_numpy(kernel_backend, dtype, batch_shape, with_bias, approximate, rng):
    args = _inputs(rng, batch_shape, 6, 5, with_bias)
    check_backends(ops.linear_gelu, args, dict(approximate=approximate), backend=kernel_backend, dtype=dtype,
                   **tolerance(dtype))


@pytest.mark.parametrize("approximate", APPROXIMATIONS)
def test_cpu_matches_numpy_over_several_row_blocks(dtype, approximate, rng):
    """300 rows: several row blocks of the cpu kernels (too many threads for the CUDA simulator)."""
    args = _inputs(rng, (300,), 6, 5, True)
    check_backends(ops.linear_gelu, args, dict(approximate=approximate), backend="cpu", dtype=dtype,
                   **tolerance(dtype))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(batch_shape=shapes(min_dims=0, max_dims=3), in_features=dims(), out_features=dims(),
       with_bias=st.booleans(), approximate=st.sampled_from(APPROXIMATIONS), seed=seeds(), layout=layouts())
def test_equals_gelu_of_linear(backend, batch_shape, in_features, out_features, with_bias, approximate, seed,
                               layout):
    """The defining property: the op is the composition of the numpy references of linear and gelu, forward
    and gradients, for any leading axes (none or several), with or without a bias, in any memory layout."""
    rng = np.random.default_rng(seed)
    x, weight, bias = _inputs(rng, batch_shape, in_features, out_features, with_bias)
    x = random_array(x.shape, seed, layout=layout)
    dout = rng.standard_normal(tuple(batch_shape) + (out_features,))
    y, cache = ops.linear_gelu.forward(x, weight, bias, approximate=approximate, backend=backend)
    grads = ops.linear_gelu.backward(dout, cache)
    expected_y, expected_grads = _composed(x, weight, bias, approximate, dout)
    assert y.shape == tuple(batch_shape) + (out_features,) and y.dtype == x.dtype
    assert_close(y, expected_y, rtol=1e-12, atol=1e-12)
    assert (grads[2] is None) == (bias is None)
    for got, expected in zip(grads, expected_grads):
        if got is not None:
            assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_numpy_reference_is_the_composition_bit_for_bit(rng):
    x, weight, bias = _inputs(rng, (4, 5), 6, 7)
    dout = rng.standard_normal((4, 5, 7))
    for approximate in APPROXIMATIONS:
        y, cache = ops.linear_gelu.forward(x, weight, bias, approximate=approximate, backend="numpy")
        expected_y, expected_grads = _composed(x, weight, bias, approximate, dout)
        np.testing.assert_array_equal(y, expected_y)
        for got, expected in zip(ops.linear_gelu.backward(dout, cache), expected_grads):
            np.testing.assert_array_equal(got, expected)


def test_matches_torch(rng):
    import torch
    x, weight, bias = _inputs(rng, (2, 5), 4, 3)
    g = rng.standard_normal((2, 5, 3))
    for approximate in APPROXIMATIONS:
        y, cache = ops.linear_gelu.forward(x, weight, bias, approximate=approximate)
        tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
        yt = torch.nn.functional.gelu(torch.nn.functional.linear(*tensors), approximate=approximate)
        yt.backward(torch.tensor(g))
        assert_close(y, yt.detach().numpy())
        for grad, t in zip(ops.linear_gelu.backward(g, cache), tensors):
            assert_close(grad, t.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    """The errors of gelu for ``approximate`` and of a backward, named after this op (the arrays' errors are
    linear's, tested with linear's in tests/ops/test_linear.py)."""
    x, w, b = np.zeros((2, 4)), np.zeros((3, 4)), np.zeros(3)
    with pytest.raises(ValueError, match="linear_gelu: 'approximate'"):
        ops.linear_gelu.forward(x, w, b, approximate="fast", backend=backend)
    with pytest.raises(ValueError, match="linear_gelu: 'approximate'"):
        ops.linear_gelu.forward(x, w, b, approximate=None, backend=backend)
    _, cache = ops.linear_gelu.forward(x, w, b, backend=backend)
    with pytest.raises(ValueError, match="linear_gelu"):
        ops.linear_gelu.backward(np.zeros((2, 4)), cache)
    with pytest.raises(TypeError, match="linear_gelu: 'cache'"):
        ops.linear_gelu.backward(np.zeros((2, 3)), ops.linear.forward(x, w, b, backend=backend)[1])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("x_shape, out_features", [((0, 4), 3), ((5, 0), 3), ((5, 4), 0), ((2, 0, 4), 3)])
def test_empty_axes(backend, rng, x_shape, out_features):
    x, weight, bias = _inputs(rng, x_shape[:-1], x_shape[-1], out_features)
    y, cache = ops.linear_gelu.forward(x, weight, bias, backend=backend)
    dout = rng.standard_normal(y.shape)
    expected_y, expected_grads = _composed(x, weight, bias, "none", dout)
    assert_close(y, expected_y)
    for got, expected in zip(ops.linear_gelu.backward(dout, cache), expected_grads):
        assert got.shape == expected.shape
        assert_close(got, expected)


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x, weight, bias = _inputs(rng, (5,), 6, 3)
    g = rng.standard_normal((5, 3))
    y, cache = ops.linear_gelu.forward(*(cuda.to_device(a) for a in (x, weight, bias)), approximate="tanh",
                                       backend="cuda")
    grads = ops.linear_gelu.backward(cuda.to_device(g), cache)
    expected_y, expected_cache = ops.linear_gelu.forward(x, weight, bias, approximate="tanh", backend="numpy")
    assert_close(y.copy_to_host(), expected_y)
    for grad, expected in zip(grads, ops.linear_gelu.backward(g, expected_cache)):
        assert not isinstance(grad, np.ndarray)
        assert_close(grad.copy_to_host(), expected)
