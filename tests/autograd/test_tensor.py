"""Tensor basics: construction, attributes, backward's arguments, no_grad, arithmetic sugar."""
import numpy as np
import pytest

import refvit
from refvit import ops
from refvit.autograd import Tensor, apply, enable_grad, is_grad_enabled, no_grad
from refvit.testing import assert_close



def test_data_conversion():
    assert Tensor([1, 2, 3]).dtype == np.float64
    assert Tensor(np.arange(3)).dtype == np.float64
    assert Tensor(np.array([True, False])).dtype == np.float64
    assert Tensor(2.5).shape == ()
    x32 = np.ones((2, 3), np.float32)
    t = Tensor(x32)
    assert t.data is x32 and t.dtype == np.float32  # kept, not copied
    assert Tensor(t).data is x32
    with pytest.raises(TypeError, match="Tensor: 'data'"):
        Tensor(np.ones(3, np.float16))
    with pytest.raises(TypeError, match="Tensor: 'data'"):
        Tensor(np.ones(3, np.complex128))


def test_attributes_and_repr():
    t = Tensor(np.zeros((2, 3, 4)), requires_grad=True)
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3, 4), 3, 24, 2)
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    assert t.numpy() is t.data
    assert "requires_grad=True" in repr(t) and "float64" in repr(t)
    y = apply(ops.gelu, t)
    assert not y.is_leaf and y.grad_fn == "gelu" and "grad_fn=gelu" in repr(y)
    assert Tensor([[3.0]]).item() == 3.0
    with pytest.raises(ValueError, match="Tensor.item"):
        t.item()


def test_iteration_gives_recorded_rows():
    x = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    first, second, third = x
    assert second.grad_fn == "getitem" and np.array_equal(second.data, [2.0, 3.0])
    second.backward(np.ones(2))
    assert np.array_equal(x.grad, [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])


def test_detach_shares_data_and_drops_history():
    x = Tensor(np.ones(3), requires_grad=True)
    y = apply(ops.gelu, x)
    d = y.detach()
    assert d.data is y.data and d.is_leaf and not d.requires_grad


def test_backward_arguments():
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    y = apply(ops.gelu, x)
    with pytest.raises(ValueError, match="Tensor.backward: 'grad'"):
        y.backward()
    with pytest.raises(ValueError, match="Tensor.backward: 'grad' must have shape"):
        y.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="Tensor.backward"):
        Tensor(np.ones(2)).backward(np.ones(2))
    y.backward(np.ones(2, np.float32))  # cast to the output's dtype
    assert x.grad.dtype == np.float64


def test_scalar_backward_without_grad():
    x = Tensor(np.array([[0.7]]), requires_grad=True)
    apply(ops.gelu, x).backward()
    expected = ops.gelu.backward(np.ones((1, 1)), ops.gelu.forward(x.data, backend="numpy")[1])[0]
    assert_close(x.grad, expected)


def test_leaf_backward_accumulates_into_grad():
    x = Tensor(np.ones(2), requires_grad=True)
    x.backward(np.array([1.0, 2.0]))
    x.backward(np.array([1.0, 2.0]))
    assert_close(x.grad, np.array([2.0, 4.0]))


def test_grad_accumulates_across_backward_calls(rng):
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    g = rng.standard_normal(4)
    apply(ops.gelu, x).backward(g)
    first = x.grad.copy()
    apply(ops.gelu, x).backward(g)
    assert_close(x.grad, 2 * first)
    x.zero_grad()
    assert x.grad is None


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = apply(ops.gelu, x)
        with enable_grad():
            z = apply(ops.gelu, x)
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad and z.grad_fn == "gelu"


def test_constants_do_not_record():
    y = apply(ops.gelu, np.ones(3))
    assert isinstance(y, Tensor) and not y.requires_grad
    z = apply(ops.gelu, Tensor(np.ones(3)))
    assert not z.requires_grad


def test_arithmetic_sugar_values_and_gradients(rng):
    a_data, b_data = rng.standard_normal((2, 3)), rng.standard_normal(3)
    a, b = Tensor(a_data, requires_grad=True), Tensor(b_data, requires_grad=True)
    out = (a + b) * a - b * 2.0 + 1.0 - (-a) / 4.0
    expected = (a_data + b_data) * a_data - b_data * 2.0 + 1.0 + a_data / 4.0
    assert_close(out.data, expected)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    assert_close(a.grad, g * (2 * a_data + b_data) + g / 4.0)
    assert_close(b.grad, (g * a_data).sum(0) - 2.0 * g.sum(0))
    assert_close((3.0 - a).data, 3.0 - a_data)
    assert_close((2.0 * a + 1.0).data, 2.0 * a_data + 1.0)
    left = np.ones(3) - b * a_data[0]  # an ndarray on the left defers to the Tensor
    assert isinstance(left, Tensor) and left.grad_fn == "add"
    assert_close(left.data, 1.0 - b_data * a_data[0])


def test_python_scalars_keep_float32():
    a = Tensor(np.ones(3, np.float32), requires_grad=True)
    assert (a * 0.5 + 1.5 - 2.0).dtype == np.float32
    assert (a / 3.0).dtype == np.float32
    with pytest.raises(TypeError, match="division by a Tensor"):
        a / a
    with pytest.raises(TypeError, match="division by a Tensor"):
        1.0 / a


def test_sum_and_mean(rng):
    data = rng.standard_normal((2, 3, 4))
    x = Tensor(data, requires_grad=True)
    assert x.mean().shape == () and abs(x.mean().item() - np.mean(data)) < 1e-12
    assert_close(x.sum(axis=1).data, data.sum(1))
    assert_close(x.sum(axis=(0, 2), keepdims=True).data, data.sum((0, 2), keepdims=True))
    x.sum().backward()
    assert_close(x.grad, np.ones_like(data))


def test_matmul(rng):
    a_data, w_data = rng.standard_normal((2, 5, 3)), rng.standard_normal((3, 4))
    a, w = Tensor(a_data, requires_grad=True), Tensor(w_data, requires_grad=True)
    out = a @ w
    assert_close(out.data, a_data @ w_data)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    assert_close(w.grad, np.einsum("bni,bnj->ij", a_data, g))
    assert_close(a.grad, g @ w_data.T)
    with pytest.raises(ValueError, match="'@' needs a 2-D"):
        a @ np.ones(3)


def test_refvit_tensor_is_the_autograd_tensor():
    assert refvit.Tensor is Tensor
