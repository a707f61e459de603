"""Leaf gradients taken over without a copy: only arrays made for the pass alone, never the caller's
gradient, never one array for two leaves, and sums that do not change arrays still being read."""
import numpy as np
import pytest

from refvit.autograd import Tensor
from refvit.autograd import tape


def leaves(*values):
    return [Tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for v in values]


def test_the_callers_gradient_is_copied():
    (a,) = leaves([1.0, 2.0, 3.0])
    upstream = np.array([1.0, -1.0, 2.0])
    (a + np.zeros(3)).backward(upstream)  # add's backward hands ``dout`` itself to ``a``
    assert a.grad is not upstream
    a.grad[0] = 99.0
    np.testing.assert_array_equal(upstream, [1.0, -1.0, 2.0])


def test_two_leaves_never_share_one_array():
    a, b = leaves([1.0, 2.0], [3.0, 4.0])
    y = a * 2.0
    (y + b * 1.0).backward(np.ones(2))  # add hands one array to both branches
    (c, d) = leaves([1.0, 1.0], [1.0, 1.0])
    (c + d).backward(np.ones(2) * 3.0)
    assert c.grad is not d.grad
    c.grad += 1.0
    np.testing.assert_array_equal(d.grad, [3.0, 3.0])
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_a_leaf_used_twice_gets_the_sum_and_the_other_branch_its_own_gradient():
    (a,) = leaves([1.0, -2.0])
    h = a * 3.0
    (a + h + a).backward(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(a.grad, [5.0, 10.0])


def test_a_leaf_reached_through_two_branches_of_one_add_gets_their_sum():
    (a,) = leaves([1.0, 2.0])
    h = a * 1.0
    y = (a * 1.0) + h * 4.0
    y.backward(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(a.grad, [5.0, 5.0])


def test_gradients_sum_over_backward_calls_in_place_after_a_take_over():
    (a,) = leaves([1.0, 2.0])
    (a * 2.0).backward(np.ones(2))
    first = a.grad
    (a * 2.0).backward(np.ones(2))
    assert a.grad is first  # the second call adds into the array the first one left
    np.testing.assert_array_equal(a.grad, [4.0, 4.0])


@pytest.mark.parametrize("retain_graph", [False, True])
def test_the_gradient_is_the_same_with_and_without_retain_graph(retain_graph):
    (a,) = leaves([0.5, -1.5, 2.0])
    ((a * a) * 3.0).backward(np.ones(3), retain_graph=retain_graph)
    np.testing.assert_allclose(a.grad, 6.0 * np.array([0.5, -1.5, 2.0]))


def test_a_read_only_or_view_gradient_is_copied():
    (a,) = leaves([1.0, 2.0, 3.0, 4.0])
    view = np.arange(8.0)[::2]
    read_only = np.arange(4.0)
    read_only.flags.writeable = False
    for grad in (view, read_only):
        a.grad = None
        tape._accumulate_leaf(a, grad, set())
        assert a.grad is not grad and a.grad.flags.writeable
        np.testing.assert_array_equal(a.grad, grad)
