"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and ``state_dict``.

A subclass gives its hyper-parameter ``defaults`` and writes ``_update(parameter, grad,
state, group)``, which changes ``parameter.data`` in place. Parameters whose ``grad`` is
``None`` are skipped, as in PyTorch. ``step`` bumps the version of every parameter it
updates, so a graph recorded before the step and still holding a parameter refuses its
backward (see ``docs/autograd.md``, "In-place changes") instead of giving gradients of
values that no longer exist.

``params`` is an iterable of :class:`~refvit.nn.Parameter` (e.g. ``model.parameters()``)
or a list of dicts, each with ``"params"`` and any hyper-parameters that override the
defaults for that group::

    AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)

``state_dict()`` has PyTorch's layout: ``{"state": {index: {name: value}}, "param_groups":
[{hyper-parameters..., "params": [indices]}]}`` with parameters numbered in group order.
"""
from __future__ import annotations

import copy
import numbers

import numpy as np

from refvit.autograd.tensor import Tensor


class Optimizer:
    name = "Optimizer"

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        if isinstance(params, Tensor):
            raise TypeError(f"{self.name}: 'params' must be an iterable of Parameters or of dicts; "
                            f"got a single {type(params).__name__}")
        entries = list(params)
        if not entries:
            raise ValueError(f"{self.name}: 'params' must hold at least one parameter; got an empty list")
        groups = entries if isinstance(entries[0], dict) else [{"params": entries}]
        self.param_groups = []
        self.state = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a group ``{"params": [...], hyper-parameter: value, ...}``; missing values come from ``defaults``."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{self.name}: a parameter group must be a dict with a 'params' entry; got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for parameter in params:
            if not isinstance(parameter, Tensor):
                raise TypeError(f"{self.name}: 'params' must hold Parameters (Tensors); got {type(parameter).__name__}")
            if id(parameter) in seen:
                raise ValueError(f"{self.name}: 'params' must list each parameter once; one appears in two groups "
                                 f"or twice in a group (shape {parameter.shape})")
            seen.add(id(parameter))
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}, "params": params}
        self._check_hyperparameters(full)
        self.param_groups.append(full)

    def _check_hyperparameters(self, group):
        """Subclasses check their values here (called for every group)."""

    def _check_real(self, group, key, minimum=0.0, below=None):
        value = group[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{self.name}: '{key}' must be a real number; got {value!r}")
        if value < minimum or (below is not None and value >= below) or not np.isfinite(value):
            expected = f">= {minimum}" + (f" and < {below}" if below is not None else "")
            raise ValueError(f"{self.name}: '{key}' must be {expected}; got {value!r}")

    # ---- the step
    def zero_grad(self):
        """Forget every parameter's gradient (``grad = None``)."""
        for group in self.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def step(self):
        """Update every parameter that has a gradient, group by group."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                grad = np.asarray(parameter.grad)
                if grad.shape != parameter.data.shape:
                    raise ValueError(f"{self.name}: a gradient must have its parameter's shape {parameter.shape}; "
                                     f"got {grad.shape}")
                state = self.state.setdefault(id(parameter), {})
                self._update(parameter, grad.astype(parameter.data.dtype, copy=False), state, group)
                parameter._bump_version()

    def _update(self, parameter, grad, state, group):
        raise NotImplementedError

    # ---- saving and loading
    def _parameters_in_order(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [...]}`` (copies; arrays stay NumPy arrays)."""
        index_of = {id(p): i for i, p in enumerate(self._parameters_in_order())}
        state = {index_of[key]: copy.deepcopy(value) for key, value in self.state.items() if key in index_of}
        groups = []
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = [index_of[id(p)] for p in group["params"]]
            groups.append(saved)
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and per-parameter state saved by :meth:`state_dict`.

        The groups must have the same sizes as this optimiser's; state arrays must have
        their parameters' shapes and are cast to their dtypes.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{self.name}.load_state_dict: 'state_dict' must have {len(self.param_groups)} "
                             f"parameter group(s); got {len(saved_groups)}")
        for number, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{self.name}.load_state_dict: group {number} must have {len(group['params'])} "
                                 f"parameters; got {len(saved['params'])}")
        parameter_at = {}
        for saved, group in zip(saved_groups, self.param_groups):
            parameter_at.update(zip(saved["params"], group["params"]))
        new_state = {}
        for index, entries in state_dict["state"].items():
            parameter = parameter_at.get(int(index))
            if parameter is None:
                raise ValueError(f"{self.name}.load_state_dict: state for parameter {index}, which no group holds")
            restored = {}
            for key, value in entries.items():
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    if value.shape != parameter.data.shape:
                        raise ValueError(f"{self.name}.load_state_dict: state '{key}' of parameter {index} must have "
                                         f"shape {parameter.shape}; got {value.shape}")
                    value = value.astype(parameter.data.dtype, copy=True)
                else:
                    value = copy.deepcopy(value)
                restored[key] = value
            new_state[id(parameter)] = restored
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for number, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {number}: {len(group['params'])} parameters, {settings}")
        return "\n".join(lines + [")"])
