r"""Learning-rate schedule: linear warm-up, then cosine decay; stepped once per batch.

For step :math:`t = 0, 1, \dots` (the number of optimiser steps taken so far), base rate
:math:`\eta_0` of a group, ``warmup_steps`` :math:`W`, ``total_steps`` :math:`T` and
``min_lr`` :math:`\eta_{min}`:

.. math::  \eta_t = \eta_0\,\frac{t + 1}{W} \quad (t < W)

.. math::  \eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})\Bigl(1 + \cos\bigl(\pi\,
           \tfrac{t - W}{\max(1,\,T - W)}\bigr)\Bigr) \quad (W \le t < T)

and :math:`\eta_t = \eta_{min}` from :math:`t = T` on. The first batch already trains
(at :math:`\eta_0/W`), the rate reaches :math:`\eta_0` on the last warm-up step, and the
cosine takes it down to nearly :math:`\eta_{min}` on the last of the :math:`T` steps.

Use::

    schedule = CosineWarmupSchedule(optimizer, total_steps=epochs * batches, warmup_steps=batches)
    for batch in ...:
        ...; optimizer.step(); schedule.step()
"""
from __future__ import annotations

import math
import numbers


class CosineWarmupSchedule:
    """Sets ``group["lr"]`` of every parameter group of ``optimizer`` for the coming step."""

    def __init__(self, optimizer, total_steps, warmup_steps=0, min_lr=0.0):
        for name, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"CosineWarmupSchedule: '{name}' must be an integer >= 0; got {value!r}")
        if total_steps < 1:
            raise ValueError(f"CosineWarmupSchedule: 'total_steps' must be an integer >= 1; got {total_steps!r}")
        if warmup_steps > total_steps:
            raise ValueError(f"CosineWarmupSchedule: 'warmup_steps' must be <= total_steps ({total_steps}); "
                             f"got {warmup_steps}")
        if not isinstance(min_lr, numbers.Real) or isinstance(min_lr, bool) or min_lr < 0:
            raise ValueError(f"CosineWarmupSchedule: 'min_lr' must be a number >= 0; got {min_lr!r}")
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def lr_at(self, step, base_lr):
        """The rate of a group with base rate ``base_lr`` at optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def _apply(self):
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.step_count, base_lr)

    def step(self):
        """Advance one optimiser step and set the rates for the next one."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self):
        """The rate of each group for the coming step."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "min_lr": self.min_lr,
                "base_lrs": list(self.base_lrs), "step_count": self.step_count}

    def load_state_dict(self, state_dict):
        """Continue from a saved state (settings included) and set the optimiser's rates to match."""
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"CosineWarmupSchedule.load_state_dict: 'base_lrs' must have one rate per group "
                             f"({len(self.optimizer.param_groups)}); got {len(state_dict['base_lrs'])}")
        self.total_steps = int(state_dict["total_steps"])
        self.warmup_steps = int(state_dict["warmup_steps"])
        self.min_lr = float(state_dict["min_lr"])
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self.step_count = int(state_dict["step_count"])
        self._apply()
