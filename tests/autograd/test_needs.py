"""The tape's ``needs``: an op whose backward takes it is told which input gradients are read."""
from types import SimpleNamespace

import numpy as np
import pytest

from refvit import functional as F
from refvit.autograd import Tensor, apply
from refvit.autograd.tape import takes_needs
from refvit.kernels.cpu import conv2d as cpu_conv2d
from refvit.ops import conv2d as conv2d_op


def recording_op(calls, keyword_only=False):
    """``out = a * b + c`` (``c`` a sequence of arrays) whose backward records the ``needs`` it is given and
    returns ``None`` for the gradients not needed."""

    def forward(a, b, c, backend=None):
        return a * b + sum(c), (a, b, len(c))

    def backward(dout, cache, needs=None):
        calls.append(needs)
        a, b, pieces = cache
        needs = (True, True, True) if needs is None else needs
        return (dout * b if needs[0] else None, dout * a if needs[1] else None,
                tuple(dout for _ in range(pieces)) if needs[2] else None)

    if keyword_only:
        def backward_kw(dout, cache, *, needs=None):
            return backward(dout, cache, needs=needs)

        return SimpleNamespace(__name__="recording", DIFFERENTIABLE=("a", "b", "c"), forward=forward,
                               backward=backward_kw)
    return SimpleNamespace(__name__="recording", DIFFERENTIABLE=("a", "b", "c"), forward=forward, backward=backward)


@pytest.mark.parametrize("keyword_only", [False, True])
def test_needs_follows_the_parents_that_require_a_gradient(rng, keyword_only):
    calls = []
    op = recording_op(calls, keyword_only)
    a = Tensor(rng.standard_normal(4), requires_grad=True)
    b_plain = rng.standard_normal(4)
    b_frozen = Tensor(rng.standard_normal(4))
    c_one = [Tensor(rng.standard_normal(4)), Tensor(rng.standard_normal(4), requires_grad=True)]
    c_none = [rng.standard_normal(4), Tensor(rng.standard_normal(4))]
    cases = [
        ((a, b_plain, c_none), (True, False, False)),
        ((a, b_frozen, c_one), (True, False, True)),
        ((Tensor(a.data), Tensor(b_plain, requires_grad=True), c_none), (False, True, False)),
        ((a, Tensor(b_plain, requires_grad=True), c_one), (True, True, True)),
    ]
    for args, expected in cases:
        calls.clear()
        apply(op, *args).backward(np.ones(4))
        assert calls == [expected]


def test_a_backward_without_needs_is_called_as_before(rng):
    calls = []

    def backward(dout, cache):
        calls.append("called")
        return (dout, None)

    op = SimpleNamespace(__name__="plain", DIFFERENTIABLE=("x", "y"), forward=lambda x, y, backend=None: (x + y, None),
                         backward=backward)
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    apply(op, x, rng.standard_normal(3)).backward(np.ones(3))  # a needs= keyword would be a TypeError here
    assert calls == ["called"]
    np.testing.assert_array_equal(x.grad, np.ones(3))
    assert not takes_needs(backward)
    assert not takes_needs(lambda dout, cache, **options: None)  # only a parameter named needs counts
    assert takes_needs(conv2d_op.backward)


def test_an_intermediate_tensor_counts_as_needing_its_gradient(rng):
    """The second op's input is the first op's output: its ``needs`` entry is True although no leaf is passed."""
    calls = []
    op = recording_op(calls)
    a = Tensor(rng.standard_normal(4), requires_grad=True)
    hidden = F.gelu(a)
    apply(op, hidden, rng.standard_normal(4), [rng.standard_normal(4)]).backward(np.ones(4))
    assert calls == [(True, False, False)]
    assert a.grad is not None


def _stem(rng, dtype=np.float32):
    """A stem-like convolution: 7x7, stride 2, padding 3, 3 -> 8 channels (the gemm path's folding backward)."""
    x = rng.standard_normal((2, 12, 12, 3)).astype(dtype)
    weight = rng.standard_normal((8, 3, 7, 7)).astype(dtype)
    bias = rng.standard_normal(8).astype(dtype)
    return x, weight, bias


def _spy_on_cpu_entry(monkeypatch):
    """Record ``(needs, dx)`` of every call of the cpu conv2d kernel entry's backward."""
    seen = []
    original = cpu_conv2d.backward

    def spy(dout, x, weight, has_bias, window, needs=(True, True)):
        grads = original(dout, x, weight, has_bias, window, needs)
        seen.append((needs, grads[0]))
        return grads

    monkeypatch.setattr(cpu_conv2d, "backward", spy)
    return seen


@pytest.mark.parametrize("image_kind", ["array", "tensor"])
def test_conv2d_on_an_image_without_gradient_skips_dx(monkeypatch, rng, image_kind):
    """The image is a NumPy array or a Tensor without ``requires_grad``: the kernel is asked for no ``dx`` and
    computes none, and the weight and bias gradients equal, to the bit, those of a pass that also made ``dx``."""
    x, weight, bias = _stem(rng)
    upstream = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)
    seen = _spy_on_cpu_entry(monkeypatch)

    w_full, b_full, x_full = Tensor(weight.copy(), True), Tensor(bias.copy(), True), Tensor(x.copy(), True)
    F.conv2d(x_full, w_full, b_full, stride=2, padding=3, backend="cpu").backward(upstream)
    assert seen[-1][0] == (True, True) and seen[-1][1] is not None

    w, b = Tensor(weight.copy(), True), Tensor(bias.copy(), True)
    image = x if image_kind == "array" else Tensor(x)
    F.conv2d(image, w, b, stride=2, padding=3, backend="cpu").backward(upstream)
    assert seen[-1] == ((False, True), None)
    np.testing.assert_array_equal(w.grad, w_full.grad)
    np.testing.assert_array_equal(b.grad, b_full.grad)
    assert len(seen) == 2


def test_conv2d_with_a_frozen_weight_gives_only_dx(monkeypatch, rng):
    x, weight, bias = _stem(rng)
    upstream = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)
    seen = _spy_on_cpu_entry(monkeypatch)
    x_full = Tensor(x.copy(), True)
    F.conv2d(x_full, Tensor(weight, True), Tensor(bias, True), stride=2, padding=3, backend="cpu").backward(upstream)
    x_only = Tensor(x.copy(), True)
    F.conv2d(x_only, Tensor(weight), bias, stride=2, padding=3, backend="cpu").backward(upstream)
    assert seen[-1][0] == (True, False)
    np.testing.assert_array_equal(x_only.grad, x_full.grad)


def test_conv2d_numpy_reference_is_told_too(monkeypatch, rng):
    x, weight, bias = _stem(rng, np.float64)
    seen = []
    original = conv2d_op._backward_numpy

    def spy(*args):
        grads = original(*args)
        seen.append((args[-1], grads))
        return grads

    monkeypatch.setattr(conv2d_op, "_backward_numpy", spy)
    w = Tensor(weight, True)
    F.conv2d(x, w, bias, stride=2, padding=3, backend="numpy").backward(np.ones((2, 6, 6, 8)))
    (needs, grads), = seen
    assert needs == (False, True)
    assert grads[0] is None and grads[2] is None
    _, cache = conv2d_op.forward(x, weight, bias, stride=2, padding=3, backend="numpy")
    np.testing.assert_array_equal(w.grad, conv2d_op.backward(np.ones((2, 6, 6, 8)), cache)[1])

