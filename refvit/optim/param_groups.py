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
