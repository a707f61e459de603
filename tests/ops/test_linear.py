"""linear: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import dims, layouts, random_array, seeds, shapes
from tests.conftest import tolerance


def _inputs(rng, batch_shape, in_features, out_features, with_bias=True):
    x = rng.standard_normal(tuple(batch_shape) + (in_features,))
    weight = rng.standard_normal((out_features, in_features))
    bias = rng.standard_normal(out_features) if with_bias else None
    return x, weight, bias


# batch (2, 3) with a bias is the op's example (test_contract.py)
@pytest.mark.parametrize("batch_shape, with_bias", [((), True), ((), False), ((3,), True), ((3,), False),
                                                    ((2, 3), False)])
def test_gradcheck(rng, batch_shape, with_bias):
    gradcheck(ops.linear, _inputs(rng, batch_shape, 4, 3, with_bias))


@given(batch_shape=shapes(min_dims=0, max_dims=3), in_features=dims(), out_features=dims(),
       with_bias=st.booleans(), seed=seeds())
def test_vjp(batch_shape, in_features, out_features, with_bias, seed):
    rng = np.random.default_rng(seed)
    check_vjp(ops.linear, _inputs(rng, batch_shape, in_features, out_features, with_bias))


@pytest.mark.parametrize("batch_shape, with_bias", [((), True), ((), False), ((2, 3), False)])
def test_backends_match_numpy(kernel_backend, dtype, batch_shape, with_bias, rng):
    args = _inputs(rng, batch_shape, 6, 5, with_bias)
    check_backends(ops.linear, args, backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(batch_shape=shapes(min_dims=0, max_dims=3), in_features=dims(), out_features=dims(), seed=seeds(),
       layout=layouts())
def test_equals_x_times_weight_transposed_plus_bias(backend, batch_shape, in_features, out_features, seed, layout):
    rng = np.random.default_rng(seed)
    x, weight, bias = _inputs(rng, batch_shape, in_features, out_features)
    x = random_array(x.shape, seed, layout=layout)
    y, _ = ops.linear.forward(x, weight, bias, backend=backend)
    assert y.shape == tuple(batch_shape) + (out_features,)
    expected = np.einsum("...i,oi->...o", x, weight) + bias
    assert_close(y, expected, rtol=1e-12, atol=1e-12)


def test_matches_torch(rng):
    import torch
    x, weight, bias = _inputs(rng, (2, 5), 4, 3)
    g = rng.standard_normal((2, 5, 3))
    y, cache = ops.linear.forward(x, weight, bias)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    yt = torch.nn.functional.linear(*tensors)
    yt.backward(torch.tensor(g))
    assert_close(y, yt.detach().numpy())
    for grad, t in zip(ops.linear.backward(g, cache), tensors):
        assert_close(grad, t.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("name", ["linear", "linear_gelu"])  # linear_gelu checks its arrays as linear does
def test_bad_inputs(backend, name):
    op = getattr(ops, name)
    x, w, b = np.zeros((2, 4)), np.zeros((3, 4)), np.zeros(3)
    with pytest.raises(ValueError, match=f"{name}: 'weight'"):
        op.forward(x, np.zeros((3, 5)), b, backend=backend)
    with pytest.raises(ValueError, match=f"{name}: 'weight'"):
        op.forward(x, np.zeros(4), backend=backend)
    with pytest.raises(ValueError, match=f"{name}: 'bias'"):
        op.forward(x, w, np.zeros(4), backend=backend)
    with pytest.raises(ValueError, match=f"{name}: 'x'"):
        op.forward(np.zeros(()), w, backend=backend)
    with pytest.raises(TypeError, match=f"{name}: 'x, weight, bias'"):
        op.forward(x, w, b.astype(np.float32), backend=backend)
    with pytest.raises(TypeError, match=f"{name}: 'x, weight'"):
        op.forward(x.astype(np.float32), w, backend=backend)
    with pytest.raises(TypeError, match=f"{name}: 'weight'"):
        op.forward(x, np.zeros((3, 4), dtype=np.int32), backend=backend)


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x, weight, bias = _inputs(rng, (5,), 6, 3)
    g = rng.standard_normal((5, 3))
    y, cache = ops.linear.forward(*(cuda.to_device(a) for a in (x, weight, bias)), backend="cuda")
    grads = ops.linear.backward(cuda.to_device(g), cache)
    expected_y, expected_cache = ops.linear.forward(x, weight, bias, backend="numpy")
    assert_close(y.copy_to_host(), expected_y)
    for grad, expected in zip(grads, ops.linear.backward(g, expected_cache)):
        assert not isinstance(grad, np.ndarray)
        assert_close(grad.copy_to_host(), expected)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("x_shape, out_features", [((0, 4), 3), ((5, 0), 3), ((5, 4), 0), ((2, 0, 4), 3)])
def test_empty_axes(backend, rng, x_shape, out_features):
    x, weight, bias = _inputs(rng, x_shape[:-1], x_shape[-1], out_features)
    y, cache = ops.linear.forward(x, weight, bias, backend=backend)
    assert_close(y, np.einsum("...i,oi->...o", x, weight) + bias)
    dout = rng.standard_normal(y.shape)
    dx, dweight, dbias = ops.linear.backward(dout, cache)
    assert_close(dx, np.einsum("...o,oi->...i", dout, weight))
    rows = int(np.prod(x_shape[:-1]))
    assert_close(dweight, dout.reshape(rows, out_features).T @ x.reshape(rows, x_shape[-1]))
    assert_close(dbias, dout.reshape(rows, out_features).sum(axis=0))


def _on_one_and_all_threads(step):
    """``[step()]`` run with one Numba thread and with all of them."""
    import numba

    results = []
    before = numba.get_num_threads()
    for threads in sorted({1, before}):
        numba.set_num_threads(threads)
        try:
            results.append(step())
        finally:
            numba.set_num_threads(before)
    return results


def _forward_and_backward(x, weight, bias, dout, backend):
    """``(y, dx, dweight, dbias)`` of ``ops.linear`` on ``backend``."""
    y, cache = ops.linear.forward(x, weight, bias, backend=backend)
    return (y,) + ops.linear.backward(dout, cache)


def test_cpu_row_blocks_do_not_depend_on_threads(rng):
    """Rows are cut into fixed blocks (several here), so every thread count gives the same bits."""
    from refvit.kernels.cpu import linear as cpu_linear

    rows = cpu_linear.MAX_BLOCKS * cpu_linear.ROWS_PER_BLOCK + 37  # the most blocks, the last one shorter
    x, weight, bias = _inputs(rng, (rows,), 6, 4)
    dout = rng.standard_normal((x.shape[0], 4))
    expected = ops.linear.backward(dout, ops.linear.forward(x, weight, bias, backend="numpy")[1])
    results = _on_one_and_all_threads(lambda: _forward_and_backward(x, weight, bias, dout, "cpu"))
    for got in results:
        for a, b in zip(got[1:], expected):
            assert_close(a, b, **tolerance(np.float64))
        for a, b in zip(got, results[0]):
            np.testing.assert_array_equal(a, b)


def test_cpu_forward_blocks_are_few_and_depend_on_rows_only():
    """Forward and backward cut rows into at least two blocks from 64 rows on (one per core), and the
    forward never into more than the backward does."""
    from refvit.kernels.cpu import linear as cpu_linear

    for rows in (1, 63, 64, 128, 129, 256, 1024, 2047, 2048, 4096, 16384, 10**6):
        blocks = cpu_linear.forward_blocks(rows)
        assert 1 <= blocks <= min(cpu_linear.MAX_FORWARD_BLOCKS, cpu_linear._blocks(rows))
        assert (blocks >= 2) == (rows >= 2 * cpu_linear.MIN_ROWS_PER_BLOCK)
        assert (cpu_linear._blocks(rows) >= 2) == (rows >= 2 * cpu_linear.MIN_ROWS_PER_BLOCK)


def test_cpu_output_blocks_are_chosen_by_the_shape_alone():
    """Few rows with a large weight are cut along the outputs; many rows, or a small weight, keep the row blocks."""
    from refvit.kernels.cpu import linear as cpu_linear

    few, large = cpu_linear.FEW_ROWS, cpu_linear.LARGE_WEIGHT
    assert not cpu_linear.cuts_outputs(few, 512, large // 512)
    assert not cpu_linear.cuts_outputs(few - 1, 512, large // 512 - 1)
    for rows, in_features, out_features in ((1, 512, 512), (98, 512, 1024), (98, 2048, 512), (98, 512, 10**5)):
        assert cpu_linear.cuts_outputs(rows, in_features, out_features)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("large_weight", ["patched", "real"])
def test_cpu_output_blocks_match_the_reference_on_any_thread_count(monkeypatch, rng, with_bias, large_weight):
    """The forward and the backward cut along the outputs (an odd number of outputs when patched; stage 4 of
    the official models at batch 2 otherwise) equal the reference and give the same bits on any thread count."""
    from refvit.kernels.cpu import _threads
    from refvit.kernels.cpu import linear as cpu_linear

    if large_weight == "patched":
        monkeypatch.setattr(cpu_linear, "LARGE_WEIGHT", 0)
        monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
        shape = (13, 7, 45)
    else:
        shape = (98, 512, 512)
    rows, in_features, out_features = shape
    assert cpu_linear.cuts_outputs(rows, in_features, out_features)
    x, weight, bias = _inputs(rng, (rows,), in_features, out_features)
    x, weight, bias = x.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32)
    bias = bias if with_bias else None
    dout = rng.standard_normal((rows, out_features)).astype(np.float32)

    def both_steps(backend):
        return tuple(a for a in _forward_and_backward(x, weight, bias, dout, backend) if a is not None)

    expected = both_steps("numpy")
    results = _on_one_and_all_threads(lambda: both_steps("cpu"))
    for got in results:
        assert len(got) == len(expected)
        for a, b, c in zip(got, expected, results[0]):
            assert_close(a, b, **tolerance(np.float32))
            np.testing.assert_array_equal(a, c)
