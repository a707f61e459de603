"""Pieces the training commands share: the default model, argument checks, building a model."""
from __future__ import annotations

import math
import numbers

from refvit.errors import UserError

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
    raise UserError(f"no *_nano model is registered; pass --model NAME (available: {', '.join(available) or 'none'})")


def check_model_name(command, name):
    from refvit.models import list_models

    available = list_models()
    if name not in available:
        raise UserError(f"{command}: unknown model {name!r}; available: {', '.join(available) or 'none'}")
    return name


def check_number(command, option, value, minimum, integer=False, strictly=False):
    """``value`` if it is a finite number >= ``minimum`` (> with ``strictly``), else a one-line :class:`UserError`.

    NaN and infinities are refused (argparse's ``type=float`` accepts ``nan`` and ``inf``).
    """
    kind = "an integer" if integer else "a number"
    relation = ">" if strictly else ">="
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    ok = ok and (isinstance(value, numbers.Integral) or math.isfinite(value)) and (value > minimum if strictly else value >= minimum)
    if not ok:
        raise UserError(f"{command}: '{option}' must be {kind} {relation} {minimum}; got {value!r}")
    return value


def check_backend(command, name, option="--backend"):
    """``name`` if it is a backend that can run here, else a one-line :class:`UserError` naming ``option``."""
    from refvit.backend import BACKENDS, cuda_available

    if name not in BACKENDS:
        raise UserError(f"{command}: '{option}' must be one of {', '.join(BACKENDS)}; got {name!r}")
    if name == "cuda" and not cuda_available():
        raise UserError(f"{command}: '{option} cuda' needs numba-cuda and a CUDA GPU, or the simulator "
                        f"(NUMBA_ENABLE_CUDASIM=1 set before Python starts); found neither")
    return name


def build_model(name, **kwargs):
    from refvit.models import create_model

    return create_model(name, **kwargs)


def parameter_count(model):
    return int(sum(p.size for p in model.parameters()))
