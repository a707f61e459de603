"""max_pool2d: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import seeds
from tests.conftest import tolerance

# (x shape, kernel_size, stride, padding)
SETTINGS = {
    "k3_s2_p1": ((2, 5, 6, 3), 3, 2, 1),
    "k2_default_stride": ((1, 4, 6, 2), 2, None, 0),
    "rect": ((1, 5, 4, 2), (3, 2), (1, 2), (1, 1)),
    "k4_s3_p2": ((1, 6, 5, 2), 4, 3, 2),
}


def distinct_values(shape, seed, spacing=0.1):
    """Values at least ``spacing`` apart, so no window has a tie and finite differences never swap maxima."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) * spacing


@st.composite
def pool_configs(draw):
    """(x shape, kernel_size, stride, padding) with padding <= kernel/2 and a window that fits."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    sides = [max(1, k - 2 * p) + draw(st.integers(0, 4)) for k, p in zip(kernel, padding)]
    return (draw(st.integers(1, 2)), *sides, draw(st.integers(1, 3))), kernel, stride, padding


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_gradcheck(setting):
    shape, kernel_size, stride, padding = SETTINGS[setting]
    gradcheck(ops.max_pool2d, (distinct_values(shape, 0), kernel_size, stride, padding))


@given(config=pool_configs(), seed=seeds())
def test_vjp(config, seed):
    shape, kernel_size, stride, padding = config
    check_vjp(ops.max_pool2d, (distinct_values(shape, seed), kernel_size, stride, padding))


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_backends_match_numpy(kernel_backend, dtype, setting, ties, rng):
    shape, kernel_size, stride, padding = SETTINGS[setting]
    x = np.round(rng.standard_normal(shape)) if ties else rng.standard_normal(shape)
    check_backends(ops.max_pool2d, (x, kernel_size, stride, padding), backend=kernel_backend, dtype=dtype,
                   **tolerance(dtype))


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x = rng.standard_normal((1, 4, 5, 2))
    out, cache = ops.max_pool2d.forward(cuda.to_device(x), 3, 2, 1, backend="cuda")
    assert not isinstance(out, np.ndarray)
    assert_close(out.copy_to_host(), ops.max_pool2d.forward(x, 3, 2, 1, backend="numpy")[0])
    (dx,) = ops.max_pool2d.backward(cuda.to_device(np.ones(out.shape)), cache)
    assert not isinstance(dx, np.ndarray)


@given(config=pool_configs(), seed=seeds(), ties=st.booleans())
def test_each_output_routes_its_whole_gradient_to_one_input(config, seed, ties):
    shape, kernel_size, stride, padding = config
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(shape)) if ties else rng.standard_normal(shape)
    for backend in ("numpy", "cpu"):
        out, cache = ops.max_pool2d.forward(x, kernel_size, stride, padding, backend=backend)
        ones = ops.max_pool2d.backward(np.ones(out.shape), cache)[0]
        # every output picks one input, that input holds the output's value
        assert ones.sum() == out.size
        batch, height, width, channels = shape
        picked = x.reshape(batch, height * width, channels)[
            np.arange(batch)[:, None, None, None], cache.selected, np.arange(channels)]
        assert_close(picked, out, rtol=0, atol=0)


@given(config=pool_configs(), seed=seeds(), ties=st.booleans())
def test_matches_torch_including_the_tie_rule(config, seed, ties):
    import torch
    shape, kernel_size, stride, padding = config
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(shape)) if ties else rng.standard_normal(shape)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_()
    expected = torch.nn.functional.max_pool2d(tx, kernel_size, stride, padding)
    dout = rng.standard_normal(expected.shape)
    expected.backward(torch.from_numpy(dout))
    for backend in ("numpy", "cpu"):
        out, cache = ops.max_pool2d.forward(x, kernel_size, stride, padding, backend=backend)
        assert_close(out, expected.detach().numpy().transpose(0, 2, 3, 1), rtol=0, atol=0)
        (dx,) = ops.max_pool2d.backward(np.ascontiguousarray(dout.transpose(0, 2, 3, 1)), cache)
        assert_close(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_padding_never_wins_and_nan_propagates(backend):
    x = np.full((1, 2, 2, 2), -np.inf)
    x[0, 1, 0, 1] = np.nan
    out, cache = ops.max_pool2d.forward(x, 3, 1, 1, backend=backend)
    assert np.all(np.isneginf(out[..., 0])) and np.all(np.isnan(out[..., 1]))
    assert np.all(cache.selected[..., 0] == 0) and np.all(cache.selected[..., 1] == 2)
    (dx,) = ops.max_pool2d.backward(np.ones(out.shape), cache)
    assert dx[0, 0, 0, 0] == 4 and dx[0, 1, 0, 1] == 4 and dx.sum() == 8


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x = np.zeros((1, 4, 4, 2))
    forward = ops.max_pool2d.forward
    with pytest.raises(ValueError, match="max_pool2d: 'kernel_size' must be a window that fits"):
        forward(x, (2, 7), padding=(0, 1), backend=backend)
    for stride in (0, -1, (0, 1)):
        with pytest.raises(ValueError, match="max_pool2d: 'stride' must be an integer >= 1"):
            forward(x, 2, stride, backend=backend)
    with pytest.raises(ValueError, match="max_pool2d: 'padding' must be at most half the kernel size"):
        forward(x, 2, 1, (0, 2), backend=backend)
    with pytest.raises(ValueError, match="max_pool2d: 'kernel_size' must be an integer or a sequence of 2"):
        forward(x, (2, 2, 2), backend=backend)
    with pytest.raises(TypeError, match="max_pool2d: 'x'"):
        forward([["a"]], 2, backend=backend)
