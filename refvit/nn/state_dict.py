"""Loading a ``state_dict`` (for example PyTorch's, as NumPy arrays) into a module.

Every key is checked before anything is copied, so a failed load changes nothing and
its one error lists every problem: missing keys, unexpected keys, and keys whose
shape (or kind of value) differs, with both shapes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


def as_array(value):
    """NumPy view of a state-dict value: an array, a number, a refvit or torch tensor."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    elif hasattr(value, "data") and hasattr(value, "requires_grad"):  # refvit Tensor
        value = value.data
    return np.asarray(value)


def load_into(module, expected, given, strict=True):
    """Copy ``given[key]`` into the live array ``expected[key]`` for every shared key."""
    if not hasattr(given, "keys"):
        raise TypeError(f"load_state_dict: 'state_dict' must be a mapping of names to arrays; "
                        f"got {type(given).__name__}")
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    problems, values = [], {}
    for key, target in expected.items():
        if key not in given:
            continue
        try:
            value = as_array(given[key])
        except Exception as error:  # an object NumPy cannot read
            problems.append(f"{key}: expected an array of shape {target.shape}; got {type(given[key]).__name__} "
                            f"({error})")
            continue
        if value.dtype.kind not in "fiub":
            problems.append(f"{key}: expected real numbers; got dtype {value.dtype}")
        elif value.shape != target.shape:
            problems.append(f"{key}: expected shape {target.shape}; got shape {value.shape}")
        else:
            values[key] = value
    if problems or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if problems:
            parts.append("mis-shaped keys: " + "; ".join(problems))
        raise ValueError(f"load_state_dict: 'state_dict' does not fit {type(module).__name__}: " + ". ".join(parts))
    parameters = dict(module.named_parameters())
    for key, value in values.items():
        np.copyto(expected[key], value, casting="unsafe")
        if key in parameters:  # written in place: a graph that saved this parameter sees a new version
            parameters[key]._bump_version()
    return IncompatibleKeys(missing, unexpected)
