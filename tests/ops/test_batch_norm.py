"""batch_norm: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import random_array, seeds, shapes
from tests.conftest import tolerance

ALL_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _inputs(rng, shape, training, affine=True, running=True):
    channels = shape[-1]
    x = rng.uniform(-2.0, 3.0, shape)
    weight = rng.standard_normal(channels) if affine else None
    bias = rng.standard_normal(channels) if affine else None
    running_mean = rng.standard_normal(channels) if running else None
    running_var = rng.uniform(0.5, 2.0, channels) if running else None
    return x, weight, bias, running_mean, running_var, training


# training with affine parameters and running statistics is the op's example (test_contract.py)
@pytest.mark.parametrize("training, affine, running", [
    (True, False, False), (True, True, False), (False, True, True), (False, False, True)])
def test_gradcheck(rng, training, affine, running):
    gradcheck(ops.batch_norm, _inputs(rng, (2, 2, 3, 3), training, affine, running))


@given(shape=shapes(min_dims=2, max_dims=4, min_side=2, max_side=4), training=st.booleans(), seed=seeds())
def test_vjp(shape, training, seed):
    check_vjp(ops.batch_norm, _inputs(np.random.default_rng(seed), shape, training))


def test_backends_match_numpy_in_evaluation(kernel_backend, dtype, rng):
    args = _inputs(rng, (2, 3, 2, 4), False)
    check_backends(ops.batch_norm, args, dict(momentum=0.2), backend=kernel_backend, dtype=dtype, **tolerance(dtype))


def test_cpu_sums_over_many_row_blocks(rng):
    args = _inputs(rng, (3, 50, 2), True)  # 150 rows: more than one block of rows
    check_backends(ops.batch_norm, args, backend="cpu", dtype=np.float64, **tolerance(np.float64))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_running_statistics_follow_pytorchs_rule(backend, dtype_, rng):
    x = rng.uniform(-1.0, 4.0, (3, 2, 5)).astype(dtype_)
    running_mean = rng.standard_normal(5).astype(dtype_)
    running_var = rng.uniform(0.5, 2.0, 5).astype(dtype_)
    start_mean, start_var = running_mean.copy(), running_var.copy()
    ops.batch_norm.forward(x, None, None, running_mean, running_var, True, momentum=0.3, backend=backend)
    n = 6
    rows = x.reshape(n, 5).astype(np.float64)
    expected_mean = 0.7 * start_mean + 0.3 * rows.mean(axis=0)
    expected_var = 0.7 * start_var + 0.3 * rows.var(axis=0, ddof=1)
    assert running_mean.dtype == dtype_ and running_var.dtype == dtype_
    assert_close(running_mean, expected_mean.astype(dtype_), **tolerance(dtype_))
    assert_close(running_var, expected_var.astype(dtype_), **tolerance(dtype_))
    # evaluation mode reads the running statistics and leaves them alone
    y, _ = ops.batch_norm.forward(x, None, None, running_mean, running_var, False, backend=backend)
    assert_close(running_mean, expected_mean.astype(dtype_), **tolerance(dtype_))
    assert_close(y, ((x - running_mean) / np.sqrt(running_var + 1e-5)).astype(dtype_), **tolerance(dtype_))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape=shapes(min_dims=2, max_dims=4, min_side=2, max_side=4), seed=seeds())
def test_training_output_is_normalised_per_channel(backend, shape, seed):
    x = random_array(shape, seed, scale=3.0) + 2.0
    y, _ = ops.batch_norm.forward(x, None, None, None, None, True, eps=0.0, backend=backend)
    rows = y.reshape(-1, shape[-1])
    assert_close(rows.mean(axis=0), np.zeros(shape[-1]), atol=1e-9)
    assert_close(rows.var(axis=0), np.ones(shape[-1]), atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_training_without_running_statistics_tracks_nothing(backend, rng):
    x, weight, bias, *_ = _inputs(rng, (4, 3), True)
    with_stats = _inputs(rng, (4, 3), True)
    y_none, _ = ops.batch_norm.forward(x, weight, bias, None, None, True, backend=backend)
    y_stats, _ = ops.batch_norm.forward(x, weight, bias, with_stats[3], with_stats[4], True, backend=backend)
    assert_close(y_none, y_stats)


def test_matches_torch_over_several_steps(rng):
    import torch
    norm = torch.nn.BatchNorm2d(4, momentum=0.1, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(rng.standard_normal(4)))
        norm.bias.copy_(torch.tensor(rng.standard_normal(4)))
    weight, bias = norm.weight.detach().numpy().copy(), norm.bias.detach().numpy().copy()
    running_mean, running_var = np.zeros(4), np.ones(4)
    for step in range(3):
        x = rng.uniform(-1.0, 3.0, (2, 3, 3, 4)) * (step + 1)
        g = rng.standard_normal(x.shape)
        y, cache = ops.batch_norm.forward(x, weight, bias, running_mean, running_var, True)
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        norm.train()
        norm.zero_grad()
        yt = norm(xt)
        yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
        assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1))
        dx, dweight, dbias = ops.batch_norm.backward(g, cache)
        assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1))
        assert_close(dweight, norm.weight.grad.numpy())
        assert_close(dbias, norm.bias.grad.numpy())
        assert_close(running_mean, norm.running_mean.numpy())
        assert_close(running_var, norm.running_var.numpy())
    norm.eval()
    x = rng.standard_normal((1, 2, 2, 4))
    y, _ = ops.batch_norm.forward(x, weight, bias, running_mean, running_var, False)
    assert_close(y, norm(torch.tensor(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x, w, b, rm, rv = np.zeros((4, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)
    bn = ops.batch_norm.forward
    with pytest.raises(ValueError, match="batch_norm: 'running_mean'"):
        bn(x, w, b, None, None, False, backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'running_mean, running_var'"):
        bn(x, w, b, rm, None, True, backend=backend)
    with pytest.raises(TypeError, match="batch_norm: 'running_var'"):
        bn(x, w, b, rm, [1.0, 1.0, 1.0], True, backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'running_mean'"):
        bn(x, w, b, np.zeros(4), rv, True, backend=backend)
    read_only = rm.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="batch_norm: 'running_mean'"):
        bn(x, w, b, read_only, rv, True, backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'weight'"):
        bn(x, np.ones(4), b, rm, rv, True, backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'x'"):
        bn(np.zeros(3), w, b, rm, rv, True, backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'x'"):
        bn(np.zeros((1, 1, 3)), w, b, rm, rv, True, backend=backend)
    with pytest.raises(TypeError, match="batch_norm: 'x, weight, bias, running_mean, running_var'"):
        bn(x, w, b, rm.astype(np.float32), rv, True, backend=backend)
    with pytest.raises(TypeError, match="batch_norm: 'training'"):
        bn(x, w, b, rm, rv, "yes", backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'momentum'"):
        bn(x, w, b, rm, rv, True, momentum=1.5, backend=backend)
    with pytest.raises(ValueError, match="batch_norm: 'eps'"):
        bn(x, w, b, rm, rv, True, eps=-1.0, backend=backend)
    # evaluation with one value per channel is fine: nothing is estimated from the batch
    bn(np.zeros((1, 3)), w, b, rm, rv, False, backend=backend)


@pytest.mark.cuda
def test_cuda_updates_device_running_statistics_in_place(rng):
    from numba import cuda

    x, weight, bias, running_mean, running_var, _ = _inputs(rng, (3, 2, 3), True)
    expected_mean, expected_var = running_mean.copy(), running_var.copy()
    expected_y, expected_cache = ops.batch_norm.forward(x, weight, bias, expected_mean, expected_var, True,
                                                        backend="numpy")
    d_mean, d_var = cuda.to_device(running_mean), cuda.to_device(running_var)
    y, cache = ops.batch_norm.forward(cuda.to_device(x), weight, bias, d_mean, d_var, True, backend="cuda")
    assert not isinstance(y, np.ndarray)
    assert_close(y.copy_to_host(), expected_y)
    assert_close(d_mean.copy_to_host(), expected_mean)
    assert_close(d_var.copy_to_host(), expected_var)
    g = rng.standard_normal(x.shape)
    for grad, expected in zip(ops.batch_norm.backward(cuda.to_device(g), cache),
                              ops.batch_norm.backward(g, expected_cache)):
        assert not isinstance(grad, np.ndarray)
        assert_close(grad.copy_to_host(), expected)
