"""SGD and AdamW: hand-computed steps from the update formulas, and PyTorch's optimisers."""
import math

import numpy as np
import pytest

from refvit.nn import Parameter
from refvit.optim import SGD, AdamW


def parameter(values, grad=None):
    p = Parameter(np.array(values, dtype=np.float64))
    if grad is not None:
        p.grad = np.array(grad, dtype=np.float64)
    return p


def test_sgd_plain_step_with_weight_decay_added_to_the_gradient():
    p = parameter([1.0, -2.0], grad=[0.5, 0.25])
    SGD([p], lr=0.1, weight_decay=0.01).step()
    # d = g + wd * p = [0.51, 0.23]; p - lr * d
    np.testing.assert_allclose(p.data, [1.0 - 0.1 * 0.51, -2.0 - 0.1 * 0.23], rtol=0, atol=1e-15)


def test_sgd_momentum_first_step_copies_then_accumulates():
    p = parameter([1.0], grad=[2.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()  # buffer = 2.0, p = 1 - 0.2
    np.testing.assert_allclose(p.data, [0.8], atol=1e-15)
    p.grad = np.array([1.0])
    opt.step()  # buffer = 0.9 * 2 + 1 = 2.8, p = 0.8 - 0.28
    np.testing.assert_allclose(p.data, [0.52], atol=1e-15)
    np.testing.assert_allclose(opt.state_dict()["state"][0]["momentum_buffer"], [2.8], atol=1e-15)


def test_sgd_dampening_scales_new_gradients_after_the_first():
    p = parameter([0.0], grad=[1.0])
    opt = SGD([p], lr=1.0, momentum=0.5, dampening=0.5)
    opt.step()  # buffer = 1
    opt.step()  # buffer = 0.5 + 0.5 = 1
    np.testing.assert_allclose(p.data, [-2.0], atol=1e-15)


def test_sgd_nesterov_looks_ahead():
    p = parameter([1.0], grad=[2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    opt.step()  # buffer = 2; d = 2 + 0.9 * 2 = 3.8
    np.testing.assert_allclose(p.data, [1.0 - 0.38], atol=1e-15)
    p.grad = np.array([1.0])
    opt.step()  # buffer = 2.8; d = 1 + 0.9 * 2.8 = 3.52
    np.testing.assert_allclose(p.data, [0.62 - 0.352], atol=1e-15)


def test_adamw_two_steps_by_hand():
    lr, beta1, beta2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
    p = parameter([1.0, -0.5], grad=[0.2, -0.4])
    opt = AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    theta, m, v = np.array([1.0, -0.5]), np.zeros(2), np.zeros(2)
    for step, g in enumerate([np.array([0.2, -0.4]), np.array([-0.1, 0.3])], start=1):
        p.grad = g
        opt.step()
        theta = theta * (1 - lr * wd)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta = theta - lr / (1 - beta1 ** step) * m / (np.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps)
        np.testing.assert_allclose(p.data, theta, rtol=1e-14)
    assert opt.state_dict()["state"][0]["step"] == 2


def test_adamw_first_step_is_lr_times_sign():
    p = parameter([0.0, 0.0, 0.0], grad=[3.0, -1e-3, 0.0])
    AdamW([p], lr=0.5, weight_decay=0.0).step()
    np.testing.assert_allclose(p.data, [-0.5, 0.5, 0.0], rtol=1e-4)  # |g| >> eps: the step is lr * sign(g)


def test_defaults_are_pytorchs():
    group = AdamW([parameter([1.0])]).param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-3, (0.9, 0.999), 1e-8, 0.01)


def test_parameter_groups_override_defaults_and_skip_missing_gradients():
    a, b, c = parameter([1.0], grad=[1.0]), parameter([1.0], grad=[1.0]), parameter([1.0])
    opt = SGD([{"params": [a]}, {"params": [b, c], "lr": 0.5}], lr=0.1)
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0], c.data[0]], [0.9, 0.5, 1.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_float32_parameters_stay_float32():
    p = Parameter(np.ones(3, dtype=np.float32))
    p.grad = np.full(3, 0.5, dtype=np.float32)
    opt = AdamW([p])
    opt.step()
    assert p.data.dtype == np.float32 and opt.state_dict()["state"][0]["exp_avg"].dtype == np.float32


def test_state_dict_round_trip_continues_identically():
    def run(split):
        p = parameter([1.0, 2.0])
        opt = AdamW([p], lr=0.1)
        grads = [np.array([0.3, -0.2]), np.array([0.1, 0.4]), np.array([-0.5, 0.2])]
        for number, g in enumerate(grads):
            if number == split:
                saved = opt.state_dict()
                p_saved = p.data.copy()
                p = parameter(p_saved)
                opt = AdamW([p], lr=7.0)  # the saved lr wins
                opt.load_state_dict(saved)
            p.grad = g
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(split=None), run(split=2))


@pytest.mark.parametrize("make, match", [
    (lambda p: SGD([p], lr=-1.0), "SGD: 'lr' must be >= 0"),
    (lambda p: SGD([p], lr=0.1, nesterov=True), "SGD: 'nesterov' needs momentum > 0"),
    (lambda p: AdamW([p], betas=(0.9, 1.0)), "AdamW: 'betas' must be two numbers in"),
    (lambda p: AdamW([], lr=0.1), "AdamW: 'params' must hold at least one parameter"),
    (lambda p: AdamW([p, p]), "AdamW: 'params' must list each parameter once"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make(parameter([1.0]))


def test_params_must_be_parameters():
    with pytest.raises(TypeError, match="SGD: 'params' must hold Parameters"):
        SGD([np.ones(2)])
    with pytest.raises(TypeError, match="AdamW: 'params' must be an iterable"):
        AdamW(parameter([1.0]))


def test_load_state_dict_checks_group_sizes():
    opt = SGD([parameter([1.0]), parameter([2.0])], lr=0.1, momentum=0.9)
    other = SGD([parameter([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="SGD.load_state_dict: group 0 must have 1 parameters; got 2"):
        other.load_state_dict(opt.state_dict())


# ---- against PyTorch
@pytest.mark.parametrize("kind, kwargs", [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
])
def test_matches_torch_optim(kind, kwargs):
    import torch
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4))
    ours = Parameter(start.copy())
    theirs = torch.nn.Parameter(torch.tensor(start))
    optimizer = {"SGD": SGD, "AdamW": AdamW}[kind]([ours], **kwargs)
    reference = getattr(torch.optim, kind)([theirs], **kwargs)
    for _ in range(5):
        g = rng.standard_normal((3, 4))
        ours.grad = g.copy()
        theirs.grad = torch.tensor(g)
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make_optimizer", [lambda p: SGD(p, lr=0.1), lambda p: SGD(p, lr=0.1, momentum=0.9),
                                            lambda p: AdamW(p, lr=0.1)], ids=["SGD", "SGD-momentum", "AdamW"])
def test_step_bumps_the_version_of_updated_parameters_only(make_optimizer):
    updated, skipped = Parameter(np.ones(3)), Parameter(np.ones(2))
    optimizer = make_optimizer([updated, skipped])
    updated.grad = np.full(3, 0.5)
    optimizer.step()
    assert updated._version > 0 and skipped._version == 0
    before = updated._version
    optimizer.step()
    assert updated._version > before
