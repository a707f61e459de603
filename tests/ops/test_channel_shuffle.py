"""channel_shuffle: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import dims, layouts, random_array, seeds
from tests.conftest import tolerance


@st.composite
def maps_and_groups(draw):
    groups = draw(dims(1, 4))
    per_group = draw(dims(1, 4))
    shape = (draw(dims(1, 2)), draw(dims(1, 3)), draw(dims(1, 3)), groups * per_group)
    return shape, groups


@pytest.mark.parametrize("groups", [1, 2, 6])  # 3 is the op's example (test_contract.py)
def test_gradcheck(rng, groups):
    gradcheck(ops.channel_shuffle, (rng.standard_normal((1, 2, 2, 6)),), dict(groups=groups))


@given(shape_groups=maps_and_groups(), seed=seeds())
def test_vjp(shape_groups, seed):
    shape, groups = shape_groups
    check_vjp(ops.channel_shuffle, (random_array(shape, seed),), dict(groups=groups))


@pytest.mark.parametrize("groups", [2, 4])
def test_backends_match_numpy(kernel_backend, dtype, groups, rng):
    x = rng.standard_normal((2, 2, 3, 8))
    check_backends(ops.channel_shuffle, (x,), dict(groups=groups), backend=kernel_backend, dtype=dtype,
                   **tolerance(dtype))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape_groups=maps_and_groups(), seed=seeds(), layout=layouts())
def test_permutation_inverted_by_the_complementary_shuffle(backend, shape_groups, seed, layout):
    shape, groups = shape_groups
    channels = shape[3]
    x = random_array(shape, seed, layout=layout)
    y, _ = ops.channel_shuffle.forward(x, groups, backend=backend)
    channel_ids = np.broadcast_to(np.arange(channels, dtype=np.float64), shape)
    moved, _ = ops.channel_shuffle.forward(channel_ids, groups, backend=backend)
    assert sorted(moved[0, 0, 0]) == list(range(channels))
    assert np.array_equal(y, np.take(x, moved[0, 0, 0].astype(int), axis=3))
    back, _ = ops.channel_shuffle.forward(y, channels // groups, backend=backend)
    assert np.array_equal(back, x)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape_groups=maps_and_groups(), seed=seeds())
def test_matches_the_defining_index_map_and_reshape_order(backend, shape_groups, seed):
    shape, groups = shape_groups
    batch, height, width, channels = shape
    per_group = channels // groups
    x = random_array(shape, seed)
    y, _ = ops.channel_shuffle.forward(x, groups, backend=backend)
    for i in range(groups):
        for j in range(per_group):
            assert np.array_equal(y[..., j * groups + i], x[..., i * per_group + j])
    reshaped = x.reshape(batch, height, width, groups, per_group).transpose(0, 1, 2, 4, 3).reshape(shape)
    assert np.array_equal(y, reshaped)


def test_known_example():
    x = np.arange(6.0).reshape(1, 1, 1, 6)
    y, _ = ops.channel_shuffle.forward(x, 2, backend="numpy")
    assert y.ravel().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x = np.zeros((1, 2, 2, 6))
    with pytest.raises(ValueError, match="channel_shuffle: 'groups'"):
        ops.channel_shuffle.forward(x, 4, backend=backend)
    with pytest.raises(ValueError, match="channel_shuffle: 'groups'"):
        ops.channel_shuffle.forward(x, 0, backend=backend)
    with pytest.raises(TypeError, match="channel_shuffle: 'groups'"):
        ops.channel_shuffle.forward(x, 2.0, backend=backend)


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x = rng.standard_normal((1, 2, 2, 6))
    y, cache = ops.channel_shuffle.forward(cuda.to_device(x), 3, backend="cuda")
    (dx,) = ops.channel_shuffle.backward(y, cache)
    assert not isinstance(y, np.ndarray) and not isinstance(dx, np.ndarray)
    assert_close(y.copy_to_host(), ops.channel_shuffle.forward(x, 3, backend="numpy")[0])
    assert_close(dx.copy_to_host(), x)
