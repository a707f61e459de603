"""The noise floor of gradcheck / check_vjp: it accepts rounding, and it does not hide wrong gradients."""
import types

import numpy as np
import pytest

from refvit import ops
from refvit.testing import GradcheckError, check_vjp, gradcheck
from refvit.testing.noise import POINTS, SAFETY, noise_floor
from refvit.testing.strategies import random_array


def _with_backward(op, change):
    """``op`` with its backward's gradients passed through ``change`` (to plant a bug)."""
    return types.SimpleNamespace(forward=op.forward, backward=lambda dout, cache: change(op.backward(dout, cache)),
                                 DIFFERENTIABLE=op.DIFFERENTIABLE, __name__=op.__name__)


def _scaled(op, factor):
    return _with_backward(op, lambda grads: tuple(None if g is None else factor * g for g in grads))


def _cancelling_slope(slope):
    """``y = (1 + slope * x) - 1``: derivative ``slope``, rounded like the terms (size 1) that cancel."""

    def forward(x, backend=None):
        return (1.0 + slope * x) - 1.0, x

    return types.SimpleNamespace(forward=forward, backward=lambda dout, x: (slope * dout,), DIFFERENTIABLE=("x",),
                                 __name__="cancelling_slope")


# --- the estimates -------------------------------------------------------------------------------

def test_truncation_estimate_of_a_cubic_is_exact():
    # L(t) = t^3: D(h) = 3 t^2 + h^2 exactly, so the truncation error of D(h) is h^2.
    h = 1e-3
    floor = noise_floor(lambda t: (0.5 + t) ** 3, h, output_scale=0.0, input_scale=0.0)
    assert floor.truncation == pytest.approx(h * h, rel=1e-4)
    assert floor.floor == pytest.approx(SAFETY * (floor.truncation + floor.rounding))


def test_measured_noise_matches_planted_noise():
    rng = np.random.default_rng(0)
    sigma = 1e-12
    estimates = []
    for _ in range(400):
        noise = dict(zip((j * 5e-7 for j in POINTS), sigma * rng.standard_normal(len(POINTS))))
        estimates.append(noise_floor(lambda t: np.sin(t) + noise[t], 1e-6, 0.0, 0.0).noise)
    assert 0.7 * sigma < np.mean(estimates) < 1.5 * sigma


def test_known_values_are_not_recomputed():
    calls = []

    def along(t):
        calls.append(t)
        return t * t

    noise_floor(along, 1e-6, 0.0, 0.0, known={1e-6: 1e-12, -1e-6: 1e-12})
    assert len(calls) == len(POINTS) - 2 and 1e-6 not in calls and -1e-6 not in calls


# --- rounding is accepted --------------------------------------------------------------------------

def test_a_derivative_of_1e_9_under_rounding_passes():
    """Derivative 1e-9 through terms of size 1: the central difference is off by ~1e-2 relative."""
    op = _cancelling_slope(1e-9)
    x = np.linspace(-1.0, 1.0, 5)
    with pytest.raises(GradcheckError):
        check_vjp(op, (x,), noise_floor=False)
    with pytest.raises(GradcheckError):
        gradcheck(op, (x,), noise_floor=False)
    assert check_vjp(op, (x,))["x"] > 1e-6  # the relative error stays reported; the floor explains it
    assert gradcheck(op, (x,))["x"] > 1e-6


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("x", [-5.47410514, -6.1, -7.15191461, -9.0])
def test_gelu_far_tail_passes(approximate, x):
    """One element far in the negative tail: 1 + erf (or 1 + tanh) keeps a few digits, or none."""
    check_vjp(ops.gelu, (np.array([x]),), dict(approximate=approximate))
    gradcheck(ops.gelu, (np.array([x, 0.3]),), dict(approximate=approximate))


def test_gelu_tail_needs_the_floor():
    with pytest.raises(GradcheckError, match="dot-product test"):
        check_vjp(ops.gelu, (np.array([-7.15191461]),), dict(approximate="tanh"), noise_floor=False)


def test_thorough_profile_cases_pass():
    """The draws that failed the 1e-6 relative tolerance under HYPOTHESIS_PROFILE=thorough."""
    # batch_norm, 2 samples in training (tests/ops/test_batch_norm.py::test_vjp, shape (2, 2), seed 0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 3.0, (2, 2))
    weight, bias, running_mean = (rng.standard_normal(2) for _ in range(3))
    check_vjp(ops.batch_norm, (x, weight, bias, running_mean, rng.uniform(0.5, 2.0, 2), True))
    # gelu tanh, one element (tests/ops/test_gelu.py::test_vjp, shape (1,), seed 108575)
    check_vjp(ops.gelu, (random_array((1,), 108575, scale=2.0),), dict(approximate="tanh"))
    # layer_norm of width 2 (tests/ops/test_layer_norm.py::test_vjp, shape (2,), seed 1)
    rng = np.random.default_rng(1)
    check_vjp(ops.layer_norm, (rng.standard_normal((2,)) * 2.0 + 0.5, rng.standard_normal(2), rng.standard_normal(2)))
    # stripe_attention's dk (tests/ops/test_stripe_attention.py::test_vjp, (1, 1, 4, 4, 2), stripe (2, 2), seed 1353)
    rng = np.random.default_rng(1353)
    q, k, v = (rng.standard_normal((1, 1, 4, 4, 2)) for _ in range(3))
    check_vjp(ops.stripe_attention, (q, k, v, (2, 2)), seed=353)


@pytest.mark.parametrize("seed", range(20))
def test_narrow_normalisations_pass(seed):
    """Width-2 layer norms and 2-sample batch norms: derivatives of 1e-5 to 1e-9 on outputs of size 1."""
    rng = np.random.default_rng(seed)
    check_vjp(ops.layer_norm, (rng.standard_normal((3, 2)) * 2.0 + 0.5, rng.standard_normal(2),
                               rng.standard_normal(2)), seed=seed)
    check_vjp(ops.batch_norm, (rng.uniform(-2.0, 3.0, (2, 3)), rng.standard_normal(3), rng.standard_normal(3),
                               None, None, True), seed=seed)


# --- wrong gradients still fail ------------------------------------------------------------------------

def _wide_linear(rng):
    return rng.standard_normal((16, 48)), rng.standard_normal((40, 48)), rng.standard_normal(40)


@pytest.mark.parametrize("relative_error", [1e-4, 1e-5])
def test_small_relative_errors_in_a_wide_function_fail(rng, relative_error):
    args = _wide_linear(rng)
    check_vjp(ops.linear, args)
    gradcheck(ops.linear, args, wrt=("weight",))
    wrong = _scaled(ops.linear, 1.0 + relative_error)
    with pytest.raises(GradcheckError, match="noise floor"):
        check_vjp(wrong, args)
    with pytest.raises(GradcheckError, match="noise floor"):
        gradcheck(wrong, args, wrt=("weight",))


def test_one_element_with_the_wrong_sign_fails(rng):
    x, weight, bias = rng.standard_normal((6, 8)), rng.standard_normal(8), rng.standard_normal(8)

    def flip_one(grads):
        dx = grads[0].copy()
        dx[2, 5] = -dx[2, 5]
        return (dx,) + tuple(grads[1:])

    wrong = _with_backward(ops.layer_norm, flip_one)
    with pytest.raises(GradcheckError, match=r"worst at index \(2, 5\)"):
        gradcheck(wrong, (x, weight, bias))
    with pytest.raises(GradcheckError, match="VJP of 'x'"):
        check_vjp(wrong, (x, weight, bias))


def test_a_wrong_gradient_under_rounding_still_fails():
    """Derivative 1e-6 through cancelling terms of size 1 (rounding ~1e-4 relative); twice it fails."""
    x = np.linspace(-1.0, 1.0, 5)
    op = _cancelling_slope(1e-6)
    check_vjp(op, (x,))
    gradcheck(op, (x,))
    wrong = _scaled(op, 2.0)
    with pytest.raises(GradcheckError):
        check_vjp(wrong, (x,))
    with pytest.raises(GradcheckError):
        gradcheck(wrong, (x,))


def test_a_tiny_gradient_that_should_be_zero_fails():
    """f(x) = x * 0 exactly: any nonzero gradient above the rounding of x is wrong."""

    def forward(x, backend=None):
        return np.zeros_like(x), x

    op = types.SimpleNamespace(forward=forward, backward=lambda dout, x: (1e-6 * dout,), DIFFERENTIABLE=("x",),
                               __name__="zero")
    with pytest.raises(GradcheckError):
        check_vjp(op, (np.linspace(-1.0, 1.0, 4),))
    with pytest.raises(GradcheckError):
        gradcheck(op, (np.linspace(-1.0, 1.0, 4),))


def test_messages_give_the_floor_and_the_observed_error(rng):
    args = _wide_linear(rng)
    wrong = _scaled(ops.linear, 1.01)
    with pytest.raises(GradcheckError) as info:
        check_vjp(wrong, args)
    message = str(info.value)
    assert "relative error" in message and "|difference|" in message and "> noise floor" in message
    assert "truncation" in message and "rounding" in message
    with pytest.raises(GradcheckError) as info:
        gradcheck(wrong, args, wrt=("bias",))
    message = str(info.value)
    assert "beyond the central differences' noise floors" in message and "|difference|" in message
    assert "> noise floor" in message and "worst at index" in message


def test_without_the_floor_the_messages_stay_plain(rng):
    with pytest.raises(GradcheckError) as info:
        gradcheck(_scaled(ops.linear, 1.01), _wide_linear(rng), wrt=("bias",), noise_floor=False)
    assert "noise floor" not in str(info.value)


def test_nan_gradients_fail_with_the_floor():
    op = _with_backward(ops.tanh, lambda grads: (np.full_like(grads[0], np.nan),))
    with pytest.raises(GradcheckError):
        gradcheck(op, (np.linspace(-1.0, 1.0, 3),))
    with pytest.raises(GradcheckError):
        check_vjp(op, (np.linspace(-1.0, 1.0, 3),))
