"""Pieces the training commands share: the default model, argument checks, building a model."""
from __future__ import annotations

import numbers

DEFAULT_MODEL_ORDER = ("dinat_nano", "nat_nano", "coatnet_nano", "smt_nano", "cswin_nano", "dualvit_nano")


def default_model_name():
    """The first of :data:`DEFAULT_MODEL_ORDER` that is registered, else any ``*_nano`` model."""
    from refvit.models import list_models

    available = list_models()
    for name in DEFAULT_MODEL_ORDER:
        if name in available:
            return name
    nano = [name for name in available if name.endswith("_nano")]
    if nano:
        return nano[0]
    raise ValueError(f"no *_nano model is registered; pass --model NAME (available: {', '.join(available) or 'none'})")


def check_model_name(command, name):
    from refvit.models import list_models

    available = list_models()
    if name not in available:
        raise ValueError(f"{command}: unknown model {name!r}; available: {', '.join(available) or 'none'}")
    return name


def check_number(command, option, value, minimum, integer=False, strictly=False):
    """``value`` if it is a number >= ``minimum`` (> with ``strictly``), else a one-line ``ValueError``."""
    kind = "an integer" if integer else "a number"
    relation = ">" if strictly else ">="
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    ok = ok and (value > minimum if strictly else value >= minimum) and value == value
    if not ok:
        raise ValueError(f"{command}: '{option}' must be {kind} {relation} {minimum}; got {value!r}")
    return value


def build_model(name, **kwargs):
    from refvit.models import create_model

    return create_model(name, **kwargs)


def parameter_count(model):
    return int(sum(p.size for p in model.parameters()))
