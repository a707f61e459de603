"""Split a model's parameters into a weight-decay group and a no-decay group.

Decay is left off (as in timm and the papers' training recipes) for

* every parameter with one dimension or none: norm weights and biases, layer scales;
* every name ending in ``bias``;
* position tables: any dotted part of the name containing ``rpb`` or
  ``relative_position``, or starting with ``pos`` (``pos_embed``, ``position_bias_table``);
* names the model lists in a ``no_weight_decay()`` method, and names given in ``skip``
  (exact names or name parts).
"""
from __future__ import annotations

import numbers

POSITION_MARKERS = ("rpb", "relative_position")


def is_position_table(name):
    return any(any(marker in part for marker in POSITION_MARKERS) or part.startswith("pos")
               for part in name.split("."))


def skips_decay(name, parameter, skip=()):
    """True when ``parameter`` called ``name`` belongs in the no-decay group."""
    if parameter.ndim <= 1 or name.endswith("bias") or is_position_table(name):
        return True
    return any(name == entry or entry in name.split(".") for entry in skip)


def param_groups_weight_decay(model, weight_decay, skip=()):
    """``[{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]``.

    Only parameters that require a gradient are included; empty groups are left out.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or weight_decay < 0:
        raise ValueError(f"param_groups_weight_decay: 'weight_decay' must be a number >= 0; got {weight_decay!r}")
    if isinstance(skip, str):
        skip = (skip,)
    skip = set(skip)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if skips_decay(name, parameter, skip) else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def _is_head(name, head_prefixes):
    return any(name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")
               for prefix in head_prefixes)


def param_groups_finetune(model, weight_decay, lr, head_prefixes, backbone_lr_scale=1.0, freeze_backbone=False,
                          skip=()):
    """Parameter groups for fine-tuning: the head at ``lr``, the backbone at ``lr * backbone_lr_scale``.

    ``head_prefixes``: the head's names (``("head",)`` or ``("head.", "aux_head.")``); a
    parameter is in the head when its name is one of them or starts with one followed by a
    dot. Each part is split into a decay and a no-decay group as in
    :func:`param_groups_weight_decay`, and every group carries its own ``"lr"``, so a
    :class:`~refvit.optim.CosineWarmupSchedule` scales each from its own base rate (the
    backbone's rate stays ``backbone_lr_scale`` times the head's at every step). With
    ``freeze_backbone`` the backbone is left out of the groups: the optimiser never changes it.
    Order: head decay, head no-decay, backbone decay, backbone no-decay; empty groups are left out.
    """
    for key, value in (("weight_decay", weight_decay), ("lr", lr), ("backbone_lr_scale", backbone_lr_scale)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"param_groups_finetune: '{key}' must be a number >= 0; got {value!r}")
    if isinstance(head_prefixes, str):
        head_prefixes = (head_prefixes,)
    head_prefixes = tuple(head_prefixes)
    if not head_prefixes:
        raise ValueError("param_groups_finetune: 'head_prefixes' must name at least one head module; got none")
    if isinstance(skip, str):
        skip = (skip,)
    skip = set(skip)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    parts = {(True, False): [], (True, True): [], (False, False): [], (False, True): []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        in_head = _is_head(name, head_prefixes)
        if not in_head and freeze_backbone:
            continue
        parts[(in_head, skips_decay(name, parameter, skip))].append(parameter)
    if not parts[(True, False)] and not parts[(True, True)]:
        raise ValueError(f"param_groups_finetune: no trainable parameter is under {', '.join(head_prefixes)}")
    groups = []
    for (in_head, no_decay), params in parts.items():
        groups.append({"params": params, "weight_decay": 0.0 if no_decay else float(weight_decay),
                       "lr": float(lr) if in_head else float(lr) * float(backbone_lr_scale)})
    return [group for group in groups if group["params"]]
