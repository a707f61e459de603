"""The tape: reverse order, accumulation, multi-output ops, freeing, and only ops' own backward."""
from types import SimpleNamespace

import numpy as np
import pytest

import refvit.autograd as ag
from refvit import functional as F
from refvit import ops
from refvit.autograd import Tensor, apply
from refvit.testing import assert_close, numerical_vjp



def tape_vjp(fn, inputs, upstream):
    """Gradients of <upstream, fn(*inputs)> from the tape."""
    tensors = [Tensor(x, requires_grad=True) for x in inputs]
    fn(*tensors).backward(upstream)
    return [t.grad for t in tensors]


def numeric(fn, inputs, upstream):
    return numerical_vjp(lambda *xs: fn(*[Tensor(x) for x in xs]).data, inputs, upstream)


def check_against_numerical(fn, inputs, rng, tol=1e-6):
    upstream = rng.standard_normal(fn(*[Tensor(x) for x in inputs]).shape)
    for analytic, estimate in zip(tape_vjp(fn, inputs, upstream), numeric(fn, inputs, upstream)):
        scale = max(np.linalg.norm(analytic), np.linalg.norm(estimate), 1e-300)
        assert np.linalg.norm(analytic - estimate) / scale < tol


def counting(op):
    """The op with a counter of backward calls; forward and backward are the op's own."""
    calls = []

    def backward(dout, cache):
        calls.append(1)
        return op.backward(dout, cache)

    return SimpleNamespace(__name__=op.__name__, DIFFERENTIABLE=op.DIFFERENTIABLE, forward=op.forward,
                           backward=backward), calls


def test_diamond_graph_accumulates(rng):
    """x -> gelu -> (reshape, permute) -> concatenate: both paths reach gelu's output."""
    def fn(x):
        h = F.gelu(x)
        left = F.reshape(h, (-1,))
        right = F.reshape(F.permute(h, (1, 0)), (-1,))
        return F.gelu(F.concatenate([left, right, F.getitem(left, slice(0, 2))]))

    check_against_numerical(fn, [rng.standard_normal((3, 2))], rng)


def test_tensor_used_twice_in_one_op(rng):
    x = rng.standard_normal(4)
    upstream = rng.standard_normal(8)
    (grad,) = tape_vjp(lambda t: F.concatenate([t, t]), [x], upstream)
    assert_close(grad, upstream[:4] + upstream[4:])


def test_each_backward_called_once_per_node(rng):
    op, calls = counting(ops.gelu)
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    h = apply(op, x)
    F.concatenate([h, h, h]).backward(np.ones(9))
    assert len(calls) == 1
    assert_close(x.grad, 3 * ops.gelu.backward(np.ones(3), ops.gelu.forward(x.data)[1])[0])


def test_unused_outputs_of_a_multi_output_op_get_zero_gradients(rng):
    x = Tensor(rng.standard_normal((5, 2)), requires_grad=True)
    first, second, third = F.split(x, [1, 3, 1])
    out = F.concatenate([F.gelu(second), third])
    g = rng.standard_normal(out.shape)
    out.backward(g)
    expected = np.zeros((5, 2))
    expected[1:4] = ops.gelu.backward(g[:3], ops.gelu.forward(x.data[1:4])[1])[0]
    expected[4:] = g[3:]
    assert_close(x.grad, expected)


def test_gradient_only_for_inputs_that_require_it(rng):
    a = Tensor(rng.standard_normal(3), requires_grad=True)
    b = Tensor(rng.standard_normal(3))
    out = F.concatenate([a, b, np.ones(2)])
    out.backward(np.arange(8.0))
    assert_close(a.grad, np.arange(3.0))
    assert b.grad is None


def test_graph_is_freed_after_backward(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    y = F.gelu(x)
    y.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="freed"):
        y.backward(np.ones(3))
    assert y._node.cache is None


def test_retain_graph_allows_a_second_backward(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    y = F.gelu(x)
    y.backward(np.ones(3), retain_graph=True)
    first = x.grad.copy()
    y.backward(np.ones(3))
    assert_close(x.grad, 2 * first)


def test_deep_chain_has_no_recursion_limit(rng):
    x = Tensor(rng.standard_normal(2), requires_grad=True)
    h = x
    for _ in range(3000):
        h = F.reshape(h, (2,))
    h.backward(np.array([1.0, 2.0]))
    assert_close(x.grad, np.array([1.0, 2.0]))


def test_wrong_gradient_shape_from_an_op_is_reported(rng):
    broken = SimpleNamespace(__name__="broken", DIFFERENTIABLE=("x",), forward=lambda x, backend=None: (x * 2.0, None),
                             backward=lambda dout, cache: (dout[:1],))
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="broken.backward returned a gradient of shape"):
        apply(broken, x).backward(np.ones(3))


def test_non_differentiable_tensor_arguments_are_passed_as_their_array():
    seen = {}

    def forward(x, buffer, backend=None):
        seen["buffer"] = buffer
        buffer += 1.0
        return x * 1.0, None

    op = SimpleNamespace(__name__="bump", DIFFERENTIABLE=("x",), forward=forward, backward=lambda d, c: (d,))
    buffer = Tensor(np.zeros(2))
    apply(op, Tensor(np.ones(2), requires_grad=True), buffer)
    assert seen["buffer"] is buffer.data and np.all(buffer.data == 1.0)


def test_chain_of_functional_ops_matches_numerical_vjp(rng):
    def fn(x, w, b, gamma):
        h = F.linear(x, w, b)
        h = F.layer_norm(h, gamma, np.zeros(4), eps=1e-5)
        h = F.gelu(h)
        return F.mean(F.softmax(h, axis=-1), 0)

    inputs = [rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4),
              1.0 + 0.1 * rng.standard_normal(4)]
    check_against_numerical(fn, inputs, rng)


def test_x_times_x_and_x_plus_x(rng):
    data = rng.standard_normal((2, 3))
    g = rng.standard_normal((2, 3))
    (grad,) = tape_vjp(lambda x: x * x, [data], g)
    assert_close(grad, 2 * data * g)
    (grad,) = tape_vjp(lambda x: x + x, [data], g)
    assert_close(grad, 2 * g)
    (grad,) = tape_vjp(lambda x: (x * x + x) * x, [data], g)
    assert_close(grad, (3 * data**2 + 2 * data) * g)


def test_autograd_exports():
    for name in ("Tensor", "apply", "no_grad", "reshape", "permute", "concatenate", "split", "getitem", "pad",
                 "broadcast_to"):
        assert hasattr(ag, name)
