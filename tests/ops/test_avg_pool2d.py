"""avg_pool2d: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import random_array, seeds
from tests.conftest import tolerance

# (x shape, kernel_size, stride, padding)
SETTINGS = {
    "k3_s2_p1": ((2, 5, 6, 3), 3, 2, 1),
    "k2_default_stride": ((1, 4, 6, 2), 2, None, 0),
    "rect": ((1, 5, 4, 2), (3, 2), (1, 2), (1, 1)),
    "k4_s3_p2": ((1, 6, 5, 2), 4, 3, 2),
}


@st.composite
def pool_configs(draw):
    """(x shape, kernel_size, stride, padding) with padding <= kernel/2 and a window that fits."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    sides = [max(1, k - 2 * p) + draw(st.integers(0, 4)) for k, p in zip(kernel, padding)]
    return (draw(st.integers(1, 2)), *sides, draw(st.integers(1, 3))), kernel, stride, padding


def torch_avg_pool(x, kernel_size, stride, padding):
    import torch
    out = torch.nn.functional.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), kernel_size, stride, padding)
    return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_gradcheck(rng, setting):
    shape, kernel_size, stride, padding = SETTINGS[setting]
    gradcheck(ops.avg_pool2d, (rng.standard_normal(shape), kernel_size, stride, padding))


@given(config=pool_configs(), seed=seeds())
def test_vjp(config, seed):
    shape, kernel_size, stride, padding = config
    check_vjp(ops.avg_pool2d, (random_array(shape, seed), kernel_size, stride, padding))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_backends_match_numpy(kernel_backend, dtype, setting, rng):
    shape, kernel_size, stride, padding = SETTINGS[setting]
    check_backends(ops.avg_pool2d, (rng.standard_normal(shape), kernel_size, stride, padding),
                   backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x = rng.standard_normal((1, 4, 5, 2))
    out, cache = ops.avg_pool2d.forward(cuda.to_device(x), 3, 2, 1, backend="cuda")
    assert not isinstance(out, np.ndarray)
    assert_close(out.copy_to_host(), ops.avg_pool2d.forward(x, 3, 2, 1, backend="numpy")[0])
    (dx,) = ops.avg_pool2d.backward(cuda.to_device(np.ones(out.shape)), cache)
    assert not isinstance(dx, np.ndarray)


@given(config=pool_configs(), seed=seeds())
def test_equals_depthwise_conv_with_constant_kernel(config, seed):
    shape, (kh, kw), stride, padding = config
    channels = shape[3]
    x = random_array(shape, seed)
    weight = np.full((channels, 1, kh, kw), 1.0 / (kh * kw))
    for backend in ("numpy", "cpu"):
        pooled, pool_cache = ops.avg_pool2d.forward(x, (kh, kw), stride, padding, backend=backend)
        conv, conv_cache = ops.conv2d.forward(x, weight, stride=stride or (kh, kw), padding=padding,
                                              groups=channels, backend=backend)
        assert_close(pooled, conv, rtol=1e-12, atol=1e-12)
        dout = random_array(pooled.shape, seed + 1)
        assert_close(ops.avg_pool2d.backward(dout, pool_cache)[0], ops.conv2d.backward(dout, conv_cache)[0],
                     rtol=1e-12, atol=1e-12)


@given(config=pool_configs(), seed=seeds())
def test_matches_torch(config, seed):
    shape, kernel_size, stride, padding = config
    x = random_array(shape, seed)
    expected = torch_avg_pool(x, kernel_size, stride, padding)
    for backend in ("numpy", "cpu"):
        assert_close(ops.avg_pool2d.forward(x, kernel_size, stride, padding, backend=backend)[0], expected,
                     rtol=1e-12, atol=1e-12)


def test_padding_counts_in_the_mean():
    x = np.ones((1, 2, 2, 1))
    out, _ = ops.avg_pool2d.forward(x, 3, 1, 1, backend="numpy")
    assert_close(out[..., 0], np.full((1, 2, 2), 4.0 / 9.0))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x = np.zeros((1, 4, 4, 2))
    forward = ops.avg_pool2d.forward
    with pytest.raises(ValueError, match="avg_pool2d: 'kernel_size' must be a window that fits"):
        forward(x, 5, backend=backend)
    with pytest.raises(ValueError, match="avg_pool2d: 'kernel_size' must be an integer >= 1"):
        forward(x, 0, backend=backend)
    for stride in (0, -2, (2, 0)):
        with pytest.raises(ValueError, match="avg_pool2d: 'stride' must be an integer >= 1"):
            forward(x, 2, stride, backend=backend)
    with pytest.raises(ValueError, match="avg_pool2d: 'padding' must be at most half the kernel size"):
        forward(x, 3, 1, 2, backend=backend)
    with pytest.raises(ValueError, match="avg_pool2d: 'padding' must be an integer >= 0"):
        forward(x, 3, 1, -1, backend=backend)
    with pytest.raises(TypeError, match="avg_pool2d: 'kernel_size' must be an integer"):
        forward(x, 2.5, backend=backend)
