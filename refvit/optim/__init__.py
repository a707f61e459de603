"""Optimisers, learning-rate schedules and gradient clipping, with PyTorch's update rules.

* :class:`SGD` (momentum, dampening, Nesterov, L2 weight decay added to the gradient)
* :class:`AdamW` (decoupled weight decay, bias-corrected moments)
* :class:`CosineWarmupSchedule`: linear warm-up, then cosine decay, one step per batch
* :func:`clip_grad_norm_`: scale all gradients so their joint norm is at most ``max_norm``
* :func:`param_groups_weight_decay`: a decay and a no-decay group (norms, biases, position tables)
* :func:`param_groups_finetune`: the same split for the head and the backbone, each with its own
  learning rate, the backbone optionally frozen (left out)

Optimisers act in place on ``Parameter.data`` and read ``Parameter.grad``. See ``docs/training.md``.
"""
from refvit.optim.adamw import AdamW
from refvit.optim.clip import clip_grad_norm_
from refvit.optim.optimizer import Optimizer
from refvit.optim.param_groups import param_groups_finetune, param_groups_weight_decay
from refvit.optim.schedule import CosineWarmupSchedule
from refvit.optim.sgd import SGD

__all__ = ["AdamW", "CosineWarmupSchedule", "Optimizer", "SGD", "clip_grad_norm_", "param_groups_finetune",
           "param_groups_weight_decay"]
