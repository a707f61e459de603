"""Version counters: an in-place change of a tensor an op saved, between forward and backward, raises."""
import numpy as np
import pytest

from refvit import nn, ops
from refvit.autograd import Tensor, apply, no_grad
from refvit.optim import SGD, AdamW


def leaf(rng, shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def test_a_new_tensor_is_at_version_0_and_augmented_assignment_bumps_it():
    t = Tensor(np.zeros(3))
    assert t._version == 0
    t.data += 1.0
    t.data *= 2.0
    assert t._version == 2
    np.testing.assert_array_equal(t.data, [2.0, 2.0, 2.0])
    t._bump_version()
    assert t._version == 3


def test_na2d_input_changed_before_backward_raises_naming_op_input_shape_and_versions():
    rng = np.random.default_rng(0)
    q, k, v = (leaf(rng, (2, 4, 8, 8, 16)) for _ in range(3))
    out = apply(ops.na2d, q, k, v, kernel_size=3)
    q.data *= 2.0
    with pytest.raises(RuntimeError) as info:
        out.backward(np.ones(out.shape))
    message = str(info.value)
    assert "na2d" in message and "input 'q'" in message and "(2, 4, 8, 8, 16)" in message
    assert "version 0 -> 1" in message
    assert q.grad is None and k.grad is None


def test_an_op_output_its_backward_reads_is_checked_too():
    rng = np.random.default_rng(1)
    x = leaf(rng, (3, 5))
    y = apply(ops.softmax, x, axis=-1)
    loss = y.sum()
    y.data *= 0.5
    with pytest.raises(RuntimeError, match=r"softmax \(its output, shape \(3, 5\)\)"):
        loss.backward()


def test_explicit_bump_after_writing_into_the_array_is_detected():
    rng = np.random.default_rng(2)
    x, w = leaf(rng, (4, 3)), leaf(rng, (2, 3))
    y = apply(ops.linear, x, w)
    w.data[0, 0] = 7.0
    w._bump_version()
    with pytest.raises(RuntimeError, match=r"linear \(input 'weight', shape \(2, 3\)\).*version 0 -> 1"):
        y.backward(np.ones(y.shape))


def test_a_view_shares_the_counter_of_its_base():
    rng = np.random.default_rng(3)
    x = leaf(rng, (3, 4))
    r, d = x.reshape(12), x.detach()
    assert r._version_counter is x._version_counter and d._version_counter is x._version_counter
    w = leaf(rng, (2, 4))
    y = apply(ops.linear, x, w)
    r.data += 1.0  # writes into x's array through the view
    assert x._version == 1
    with pytest.raises(RuntimeError, match=r"linear \(input 'x'"):
        y.backward(np.ones(y.shape))


def test_change_through_a_view_of_a_saved_tensor_is_detected():
    rng = np.random.default_rng(4)
    x = leaf(rng, (3, 4))
    y = apply(ops.softmax, x.reshape(12), axis=-1)
    loss = y.sum()
    t = Tensor(rng.standard_normal(12), requires_grad=True)
    z = apply(ops.mul, x.reshape(12), t)
    x.data -= 1.0
    with pytest.raises(RuntimeError, match=r"mul \(input 'a'"):
        z.backward(np.ones(12))
    loss.backward()  # softmax saved its output only; x's change does not touch it


def test_an_op_that_saves_no_array_does_not_raise():
    rng = np.random.default_rng(5)
    a, b = leaf(rng, (2, 3)), leaf(rng, (2, 3))
    out = apply(ops.add, a, b)
    a.data += 1.0  # add's gradient needs no values, as in PyTorch
    out.backward(np.ones((2, 3)))
    np.testing.assert_array_equal(a.grad, np.ones((2, 3)))


def test_assigning_a_new_array_keeps_the_forward_values_and_does_not_raise():
    rng = np.random.default_rng(6)
    x, w = leaf(rng, (4, 3)), leaf(rng, (2, 3))
    old_w = w.data.copy()
    y = apply(ops.linear, x, w)
    w.data = np.zeros((2, 3))
    w.data += 1.0  # in place on the new array, which no cache holds
    dout = rng.standard_normal(y.shape)
    y.backward(dout)
    np.testing.assert_allclose(x.grad, dout @ old_w)


def test_a_constant_input_tensor_is_checked():
    rng = np.random.default_rng(7)
    image, w = Tensor(rng.standard_normal((4, 3))), leaf(rng, (2, 3))
    y = apply(ops.linear, image, w)
    image.data *= 3.0
    with pytest.raises(RuntimeError, match=r"linear \(input 'x'"):
        y.backward(np.ones(y.shape))


@pytest.mark.parametrize("make_optimizer", [lambda p: SGD(p, lr=0.1, momentum=0.9), lambda p: AdamW(p, lr=0.1)],
                         ids=["SGD", "AdamW"])
def test_an_optimizer_step_between_forward_and_backward_raises(make_optimizer):
    rng = np.random.default_rng(8)
    model = nn.Linear(3, 2, dtype=np.float64)
    optimizer = make_optimizer(model.parameters())
    x = Tensor(rng.standard_normal((4, 3)))
    model(x).sum().backward()
    loss = model(x).sum()
    optimizer.step()
    with pytest.raises(RuntimeError, match=r"linear \(input 'weight', shape \(2, 3\)\) was modified in place"):
        loss.backward()


def test_training_steps_do_not_raise_and_match_a_fresh_graph():
    rng = np.random.default_rng(9)
    model = nn.Linear(3, 2, dtype=np.float64)
    optimizer = AdamW(model.parameters(), lr=0.05)
    x = Tensor(rng.standard_normal((4, 3)))
    for _ in range(3):
        optimizer.zero_grad()
        model(x).sum().backward()
        before = model.weight._version
        optimizer.step()  # changes the parameters after the backward: the next step must not raise
        assert model.weight._version > before


def test_retain_graph_second_backward_checks_again():
    rng = np.random.default_rng(10)
    x, w = leaf(rng, (4, 3)), leaf(rng, (2, 3))
    loss = apply(ops.linear, x, w).sum()
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)  # nothing changed: fine, gradients summed
    np.testing.assert_allclose(x.grad, 2.0 * np.ones((4, 2)) @ w.data)
    w.data *= 2.0
    with pytest.raises(RuntimeError, match=r"linear \(input 'weight'.*version 0 -> 1"):
        loss.backward()


def test_nothing_is_checked_under_no_grad():
    rng = np.random.default_rng(11)
    x = leaf(rng, (3, 4))
    with no_grad():
        y = apply(ops.softmax, x, axis=-1)
    x.data += 1.0
    assert y._node is None


def test_loading_weights_between_forward_and_backward_is_detected():
    rng = np.random.default_rng(0)
    layer = nn.Linear(3, 2)
    out = layer(Tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True))
    layer.load_state_dict({k: np.ones_like(v) for k, v in layer.state_dict().items()})
    with pytest.raises(RuntimeError, match="linear .* modified in place"):
        out.backward(np.ones((4, 2), np.float32))
