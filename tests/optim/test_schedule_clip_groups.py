"""Cosine schedule with warm-up, gradient clipping and weight-decay groups."""
import math

import numpy as np
import pytest

from refvit import nn
from refvit.nn import Parameter
from refvit.optim import SGD, CosineWarmupSchedule, clip_grad_norm_, param_groups_weight_decay


def one_parameter_sgd(lr):
    return SGD([Parameter(np.zeros(1))], lr=lr)


def lrs(schedule, steps):
    out = []
    for _ in range(steps):
        out.append(schedule.get_last_lr()[0])
        schedule.step()
    return out


def test_warmup_is_linear_and_cosine_ends_near_min():
    schedule = CosineWarmupSchedule(one_parameter_sgd(1.0), total_steps=10, warmup_steps=4, min_lr=0.1)
    got = lrs(schedule, 12)
    expected = [0.25, 0.5, 0.75, 1.0] + [0.1 + 0.45 * (1 + math.cos(math.pi * k / 6)) for k in range(6)] + [0.1, 0.1]
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert got[4] == 1.0 and got[9] > 0.1


def test_no_warmup_starts_at_the_base_rate_and_groups_keep_their_ratio():
    a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    optimizer = SGD([{"params": [a], "lr": 0.2}, {"params": [b]}], lr=0.1)
    schedule = CosineWarmupSchedule(optimizer, total_steps=4)
    assert schedule.get_last_lr() == [0.2, 0.1]
    schedule.step()
    schedule.step()  # half way: cos(pi/2) = 0
    np.testing.assert_allclose(schedule.get_last_lr(), [0.1, 0.05], rtol=1e-15)


def test_schedule_state_round_trip():
    schedule = CosineWarmupSchedule(one_parameter_sgd(1.0), total_steps=20, warmup_steps=3)
    lrs(schedule, 7)
    fresh = CosineWarmupSchedule(one_parameter_sgd(5.0), total_steps=2)
    fresh.load_state_dict(schedule.state_dict())
    assert lrs(fresh, 10) == lrs(schedule, 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(total_steps=0), "'total_steps' must be an integer >= 1"),
    (dict(total_steps=5, warmup_steps=6), "'warmup_steps' must be <= total_steps"),
    (dict(total_steps=5, min_lr=-1.0), "'min_lr' must be a number >= 0"),
])
def test_schedule_bad_values(kwargs, match):
    with pytest.raises(ValueError, match="CosineWarmupSchedule: " + match):
        CosineWarmupSchedule(one_parameter_sgd(1.0), **kwargs)


def with_grads(*grads):
    params = []
    for g in grads:
        p = Parameter(np.zeros(len(g)))
        p.grad = np.array(g, dtype=np.float64)
        params.append(p)
    return params


def test_clip_scales_to_max_norm_and_returns_the_total():
    params = with_grads([3.0, 0.0], [0.0, 4.0])
    total = clip_grad_norm_(params, 1.0)
    assert total == 5.0
    np.testing.assert_allclose(params[0].grad, [3.0 / (5.0 + 1e-6), 0.0])
    np.testing.assert_allclose(params[1].grad, [0.0, 4.0 / (5.0 + 1e-6)])


def test_clip_leaves_small_gradients_and_handles_inf_norm_and_missing_grads():
    params = with_grads([0.3, -0.4]) + [Parameter(np.zeros(2))]
    assert clip_grad_norm_(params, 10.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(params[0].grad, [0.3, -0.4])
    assert clip_grad_norm_(params, 0.2, norm_type=math.inf) == pytest.approx(0.4)
    np.testing.assert_allclose(params[0].grad, [0.3 * 0.2 / (0.4 + 1e-6), -0.4 * 0.2 / (0.4 + 1e-6)])


def test_clip_matches_torch():
    import torch
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal((3, 2)), rng.standard_normal(5)]
    ours = with_grads(*[g.ravel() for g in grads])
    theirs = [torch.nn.Parameter(torch.zeros(g.size, dtype=torch.float64)) for g in grads]
    for t, g in zip(theirs, grads):
        t.grad = torch.tensor(g.ravel())
    expected = torch.nn.utils.clip_grad_norm_(theirs, 0.7).item()
    assert clip_grad_norm_(ours, 0.7) == pytest.approx(expected, rel=1e-12)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-12)


def test_clip_nonfinite_error():
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        clip_grad_norm_(with_grads([np.inf]), 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="clip_grad_norm_: 'max_norm' must be a number >= 0"):
        clip_grad_norm_(with_grads([1.0]), -1.0)


class PositionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.rpb = Parameter(np.zeros((2, 3, 3)))
        self.relative_position_bias_table = Parameter(np.zeros((9, 2)))
        self.pos_embed = Parameter(np.zeros((1, 4, 4)))
        self.head = nn.Linear(4, 2)


def test_weight_decay_groups_split_by_name_and_rank():
    model = PositionModel()
    decay, no_decay = param_groups_weight_decay(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["head.weight", "proj.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "head.bias", "norm.bias", "norm.weight", "pos_embed", "proj.bias", "relative_position_bias_table", "rpb"]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)


def test_skip_names_move_parameters_to_no_decay():
    model = PositionModel()
    groups = param_groups_weight_decay(model, 0.05, skip=["head.weight", "proj"])
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0 and len(groups[0]["params"]) == 9
