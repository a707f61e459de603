"""relative_position_bias: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import random_array, seeds
from tests.conftest import tolerance

op = ops.relative_position_bias


def windows():
    return st.tuples(st.integers(1, 4), st.integers(1, 4))


def make_table(window, heads, seed=0, dtype=np.float64):
    rows = (2 * window[0] - 1) * (2 * window[1] - 1)
    return random_array((rows, heads), seed, dtype=dtype)


def timm_style_index(window):
    """The table row of every (query, key) pair as timm builds it: a grid of coordinates,
    pairwise differences, shifted to start at 0, rows scaled by the row length ``2 W_w - 1``."""
    height, width = window
    grid = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"))  # (2, Wh, Ww)
    flat = grid.reshape(2, -1)                                                      # (2, N)
    relative = (flat[:, :, None] - flat[:, None, :]).transpose(1, 2, 0).copy()     # (N, N, 2)
    relative[:, :, 0] += height - 1
    relative[:, :, 1] += width - 1
    relative[:, :, 0] *= 2 * width - 1
    return relative.sum(-1)


# 1. gradients

@pytest.mark.parametrize("window", [3, 1])  # (2, 3) is the op's example (test_contract.py)
def test_gradcheck(window):
    pair = window if isinstance(window, tuple) else (window, window)
    gradcheck(op, (make_table(pair, 2),), dict(window=window))


@given(window=windows(), heads=st.integers(1, 3), seed=seeds())
def test_vjp(window, heads, seed):
    check_vjp(op, (make_table(window, heads, seed),), dict(window=window))


# 2. backends

@pytest.mark.parametrize("window", [(3, 2), (1, 4)])
def test_backends_match_numpy(kernel_backend, dtype, window):
    check_backends(op, (make_table(window, 2, seed=5),), dict(window=window), backend=kernel_backend, dtype=dtype,
                   **tolerance(dtype))


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind():
    from numba import cuda

    table = make_table((2, 2), 2)
    bias, cache = op.forward(cuda.to_device(table), (2, 2), backend="cuda")
    (dtable,) = op.backward(cuda.to_device(np.ones((2, 4, 4))), cache)
    assert hasattr(bias, "copy_to_host") and hasattr(dtable, "copy_to_host")
    assert_close(bias.copy_to_host(), op.forward(table, (2, 2), backend="numpy")[0])


# 3. properties

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(window=windows(), heads=st.integers(1, 3), seed=seeds(), data=st.data())
def test_bias_depends_only_on_the_coordinate_difference(backend, window, heads, seed, data):
    height, width = window
    bias, _ = op.forward(make_table(window, heads, seed), window, backend=backend)
    ya, xa, yb, xb = (data.draw(st.integers(0, n - 1)) for n in (height, width, height, width))
    # one shift that keeps both tokens inside the window
    sy = data.draw(st.integers(-min(ya, yb), height - 1 - max(ya, yb)))
    sx = data.draw(st.integers(-min(xa, xb), width - 1 - max(xa, xb)))
    a, b = ya * width + xa, yb * width + xb
    a2, b2 = (ya + sy) * width + xa + sx, (yb + sy) * width + xb + sx
    assert np.array_equal(bias[:, a, b], bias[:, a2, b2])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(window=windows(), heads=st.integers(1, 3), seed=seeds())
def test_table_gradient_sums_upstream_over_each_offset_class(backend, window, heads, seed):
    height, width = window
    table = make_table(window, heads, seed)
    _, cache = op.forward(table, window, backend=backend)
    tokens = height * width
    dout = random_array((heads, tokens, tokens), seed + 1)
    (dtable,) = op.backward(dout, cache)
    expected = np.zeros_like(table)
    for a in range(tokens):
        for b in range(tokens):
            dh = a // width - b // width
            dw = a % width - b % width
            expected[(dh + height - 1) * (2 * width - 1) + dw + width - 1] += dout[:, a, b]
    assert_close(dtable, expected)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(window=windows(), seed=seeds())
def test_equals_timm_index_formula(backend, window, seed):
    table = make_table(window, 3, seed)
    bias, _ = op.forward(table, window, backend=backend)
    assert np.array_equal(bias, table[timm_style_index(window)].transpose(2, 0, 1))


def test_torch_built_index_matches():
    import torch
    for window in [(1, 1), (2, 3), (4, 2), (7, 7)]:
        coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        index = (relative[:, :, 0] + window[0] - 1) * (2 * window[1] - 1) + relative[:, :, 1] + window[1] - 1
        table = make_table(window, 2)
        expected = torch.tensor(table)[index.reshape(-1)].reshape(index.shape + (2,)).permute(2, 0, 1).numpy()
        assert np.array_equal(op.forward(table, window, backend="numpy")[0], expected)
        assert np.array_equal(op.forward(table, window, backend="cpu")[0], expected)


def test_centre_row_is_the_diagonal():
    window = (3, 4)
    table = make_table(window, 2)
    bias, _ = op.forward(table, window, backend="numpy")
    centre = (window[0] - 1) * (2 * window[1] - 1) + window[1] - 1  # offset (0, 0)
    for h in range(2):
        assert np.all(np.diag(bias[h]) == table[centre, h])


def test_zero_table_gives_plain_attention(rng):
    window = (2, 3)
    q, k, v = (rng.standard_normal((2, 3, 6, 4)) for _ in range(3))
    bias, _ = op.forward(np.zeros(((2 * 2 - 1) * (2 * 3 - 1), 3)), window, backend="numpy")
    with_bias, _ = ops.attention.forward(q, k, v, bias=bias, backend="numpy")
    without, _ = ops.attention.forward(q, k, v, backend="numpy")
    assert_close(with_bias, without)


# 4. bad input

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    table = make_table((2, 3), 2)
    with pytest.raises(ValueError, match=r"relative_position_bias: 'table' must be of shape \(15, heads\).*"
                                         r"; got shape \(14, 2\)"):
        op.forward(table[:14], (2, 3), backend=backend)
    with pytest.raises(ValueError, match="relative_position_bias: 'table' must be of shape"):
        op.forward(table, (3, 3), backend=backend)
    with pytest.raises(ValueError, match="relative_position_bias: 'window' must be an integer >= 1; got 0"):
        op.forward(table, (0, 3), backend=backend)
    with pytest.raises(ValueError, match="relative_position_bias: 'window'"):
        op.forward(table, (2, 3, 1), backend=backend)
    with pytest.raises(TypeError, match="relative_position_bias: 'window'"):
        op.forward(table, 2.5, backend=backend)
