"""The structural ops: gradients, PyTorch-like helpers, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refvit.autograd as ag
from refvit.autograd import Tensor, shape
from refvit.testing import assert_close, check_vjp, gradcheck
from refvit.testing.strategies import random_array, seeds, shapes


@pytest.mark.parametrize("name", sorted(shape.STRUCTURAL_OPS))
def test_gradcheck_example(name, rng):
    op = shape.STRUCTURAL_OPS[name]
    args, kwargs = op.example(rng)
    gradcheck(op, args, kwargs)


@pytest.mark.parametrize("args", [
    ((2, 3, 4), (1, 0, 2)), ((2, 3, 4), (-1, 0, 1)), ((5,), (0,)), ((2, 1, 3, 2), (3, 1, 2, 0))])
def test_gradcheck_permute(args, rng):
    in_shape, axes = args
    gradcheck(shape.permute, (rng.standard_normal(in_shape), axes))


@pytest.mark.parametrize("index", [
    1, (slice(None), 2), (Ellipsis, slice(1, 3)), (None, slice(None, None, -1)), ([0, 0, 2], slice(1, None)),
    (slice(None), np.array([3, 1, 3]))])
def test_gradcheck_getitem(index, rng):
    gradcheck(shape.getitem, (rng.standard_normal((3, 4)), index))


def test_gradcheck_getitem_repeated_indices_accumulate():
    x = np.arange(4.0)
    out, cache = shape.getitem.forward(x, [1, 1, 3])
    (dx,) = shape.getitem.backward(np.array([1.0, 2.0, 5.0]), cache)
    assert_close(dx, np.array([0.0, 3.0, 0.0, 5.0]))


@pytest.mark.parametrize("sizes", [(1, 2, 2), (0, 5), (5,)])
def test_gradcheck_split(sizes, rng):
    gradcheck(shape.split, (rng.standard_normal((3, 5)), sizes), {"axis": -1})


def test_gradcheck_concatenate_three(rng):
    arrays = (rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 3)))
    gradcheck(shape.concatenate, (arrays,), {"axis": 1})


@pytest.mark.parametrize("target", [(4, 3, 5), (3, 5), (2, 1, 3, 5)])
def test_gradcheck_broadcast_to(target, rng):
    gradcheck(shape.broadcast_to, (rng.standard_normal((3, 1)), target))


@given(in_shape=shapes(max_dims=4), seed=seeds(), data=st.data())
def test_vjp_permute_and_reshape(in_shape, seed, data):
    x = random_array(in_shape, seed)
    axes = data.draw(st.permutations(range(len(in_shape))))
    check_vjp(shape.permute, (x, tuple(axes)), seed=seed % 1000)
    check_vjp(shape.reshape, (x, (-1,)), seed=seed % 1000)


@given(in_shape=shapes(max_dims=3), seed=seeds(), data=st.data())
def test_vjp_pad(in_shape, seed, data):
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in in_shape)
    check_vjp(shape.pad, (random_array(in_shape, seed), widths), seed=seed % 1000)


@given(in_shape=shapes(min_dims=1, max_dims=3), seed=seeds(), data=st.data())
def test_vjp_broadcast_to_and_getitem(in_shape, seed, data):
    x = random_array(in_shape, seed)
    reduced = tuple(data.draw(st.sampled_from([1, n])) for n in in_shape)
    check_vjp(shape.broadcast_to, (random_array(reduced, seed), (2,) + in_shape), seed=seed % 1000)
    start = data.draw(st.integers(0, in_shape[0] - 1))
    check_vjp(shape.getitem, (x, (slice(start, None), Ellipsis)), seed=seed % 1000)


@given(in_shape=shapes(min_dims=1, max_dims=4), seed=seeds(), data=st.data())
def test_split_and_pad_equal_numpy(in_shape, seed, data):
    """split cuts views where np.split would (pieces may be empty, the axis negative); pad's zeros and
    copy give np.pad's values in x's dtype."""
    x = random_array(in_shape, seed).astype(data.draw(st.sampled_from([np.float32, np.float64])))
    axis = data.draw(st.integers(-len(in_shape), len(in_shape) - 1))
    cuts = sorted(data.draw(st.lists(st.integers(0, in_shape[axis]), max_size=3)))
    sizes = tuple(np.diff([0] + cuts + [in_shape[axis]]))
    pieces, _ = shape.split.forward(x, sizes, axis=axis)
    expected = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
    assert len(pieces) == len(expected)
    for got, want in zip(pieces, expected):
        assert got.shape == want.shape and np.shares_memory(got, x) == (got.size > 0)
        np.testing.assert_array_equal(got, want)
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in in_shape)
    out, _ = shape.pad.forward(x, widths)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, np.pad(x, widths))


def test_forward_values_match_numpy(rng):
    x = rng.standard_normal((2, 3, 4))
    assert_close(shape.reshape.forward(x, (6, 4))[0], x.reshape(6, 4))
    assert_close(shape.permute.forward(x, (2, 0, 1))[0], x.transpose(2, 0, 1))
    assert_close(shape.pad.forward(x, ((0, 0), (1, 0), (0, 2)))[0], np.pad(x, ((0, 0), (1, 0), (0, 2))))
    pieces, _ = shape.split.forward(x, (1, 3), axis=2)
    assert_close(pieces[1], x[..., 1:])
    assert_close(shape.broadcast_to.forward(x[:, :1], (5, 2, 3, 4))[0], np.broadcast_to(x[:, :1], (5, 2, 3, 4)))


def test_functions_follow_pytorch_semantics(rng):
    x = Tensor(rng.standard_normal((7, 2)))
    assert [p.shape[0] for p in ag.split(x, 3)] == [3, 3, 1]
    assert [p.shape[0] for p in ag.split(x, [2, 5])] == [2, 5]
    assert [p.shape[0] for p in ag.chunk(x, 3)] == [3, 3, 1]
    assert [p.shape[0] for p in ag.chunk(Tensor(np.zeros((6, 1))), 4)] == [2, 2, 2]
    assert ag.transpose(x, 0, 1).shape == (2, 7)
    assert ag.flatten(Tensor(np.zeros((2, 3, 4, 5))), 1, 2).shape == (2, 12, 5)
    assert ag.unsqueeze(x, -1).shape == (7, 2, 1)
    assert ag.squeeze(ag.unsqueeze(x, 1), 1).shape == (7, 2)
    stacked = ag.stack([x, x], axis=1)
    assert stacked.shape == (7, 2, 2)
    assert_close(stacked.data, np.stack([x.data, x.data], axis=1))


def test_stack_gradient(rng):
    a = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    out = ag.stack([a, b], axis=-1)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    assert_close(a.grad, upstream[..., 0])
    assert_close(b.grad, upstream[..., 1])


def test_bad_inputs():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="reshape: 'shape'"):
        shape.reshape.forward(x, (4, 2))
    with pytest.raises(TypeError, match="reshape: 'shape'"):
        shape.reshape.forward(x, "2x3")
    with pytest.raises(TypeError, match="reshape: 'x'"):
        shape.reshape.forward(np.zeros(3, dtype=np.int32), (3,))
    with pytest.raises(ValueError, match="permute: 'axes'"):
        shape.permute.forward(x, (0, 0))
    with pytest.raises(ValueError, match="permute: 'axes'"):
        shape.permute.forward(x, (0, 1, 2))
    with pytest.raises(ValueError, match="concatenate: 'arrays\\[1\\]'"):
        shape.concatenate.forward((x, np.zeros((3, 3))), axis=1)
    with pytest.raises(TypeError, match="concatenate: 'arrays"):
        shape.concatenate.forward((x, np.zeros((2, 3), np.float32)))
    with pytest.raises(TypeError, match="concatenate: 'arrays'"):
        shape.concatenate.forward(())
    with pytest.raises(ValueError, match="concatenate: 'axis'"):
        shape.concatenate.forward((x, x), axis=2)
    with pytest.raises(ValueError, match="split: 'sizes'"):
        shape.split.forward(x, (1, 1), axis=1)
    with pytest.raises(ValueError, match="getitem: 'index'"):
        shape.getitem.forward(x, (0, 5))
    with pytest.raises(ValueError, match="pad: 'pad_width'"):
        shape.pad.forward(x, ((1, 1),))
    with pytest.raises(ValueError, match="pad: 'pad_width'"):
        shape.pad.forward(x, ((0, 0), (-1, 0)))
    with pytest.raises(ValueError, match="broadcast_to: 'shape'"):
        shape.broadcast_to.forward(x, (2, 4))
    with pytest.raises(ValueError, match="reshape: 'backend'"):
        shape.reshape.forward(x, (6,), backend="gpu")
    _, cache = shape.pad.forward(x, ((1, 0), (0, 0)))
    with pytest.raises(ValueError, match="pad: 'dout'"):
        shape.pad.backward(np.zeros((2, 3)), cache)
    _, cache = shape.split.forward(x, (1, 2), axis=1)
    with pytest.raises(TypeError, match="split: 'dout'"):
        shape.split.backward(np.zeros((2, 3)), cache)
    with pytest.raises(ValueError, match="split: 'split_size_or_sections'"):
        ag.split(Tensor(x), 0)
    with pytest.raises(ValueError, match="chunk: 'chunks'"):
        ag.chunk(Tensor(x), 0)
    with pytest.raises(ValueError, match="squeeze: 'axis'"):
        ag.squeeze(Tensor(x), 0)
