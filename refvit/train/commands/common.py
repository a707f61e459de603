"""Pieces the training commands share: the default model, argument checks, building a model."""
from __future__ import annotations

import math
import numbers
import re

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
    ok = ok and (isinstance(value, numbers.Integral) or math.isfinite(value))  # huge ints are finite
    ok = ok and (value > minimum if strictly else value >= minimum)
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


def _listed(label, names, limit=3):
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} {label} ({shown})"


def weights_mismatch(model, weights):
    """What keeps ``weights`` from loading into ``model``, in one short phrase, or ``None`` if they fit.

    Counts the missing and unexpected names and the arrays of another shape, naming the
    first few of each: ``"118 missing (patch_embed.proj.0.weight, ...), 1 unexpected (x)"``.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [f"{key} {tuple(weights[key].shape)} for {tuple(expected[key].shape)}" for key in expected
                if key in weights and tuple(getattr(weights[key], "shape", ())) != tuple(expected[key].shape)]
    parts = [_listed(label, names) for label, names in (("missing", missing), ("unexpected", unexpected),
                                                               ("of another shape", reshaped)) if names]
    return ", ".join(parts) or None


def model_from_checkpoint(command, path, state):
    """The model a checkpoint of ``refvit train`` was made with, its weights loaded.

    ``state`` comes from :func:`refvit.train.checkpoint.load_training_checkpoint`. A model
    name that is not registered, constructor arguments the model refuses, and weights that
    do not fit it are a one-line :class:`UserError` naming the checkpoint file.
    """
    from refvit.models import list_models

    name, kwargs = state["run"]["model"], state["info"]["model_kwargs"]
    if not isinstance(name, str) or name not in list_models():
        raise UserError(f"{command}: checkpoint {path} was made with the model {name!r}, which is not registered "
                        f"here; available: {', '.join(list_models()) or 'none'}")
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise UserError(f"{command}: checkpoint {path} is damaged: its model arguments are {kwargs!r}, not a "
                        f"mapping of names to values")
    try:
        model = build_model(name, **kwargs)
    except (ValueError, TypeError) as error:  # the model's argument checks refuse what the file holds
        raise UserError(f"{command}: checkpoint {path} holds arguments {name} refuses: {error}") from None
    mismatch = weights_mismatch(model, state["model"])
    if mismatch is not None:
        raise UserError(f"{command}: checkpoint {path} does not fit the model {name}{_arguments(kwargs)}: its "
                        f"weights have {mismatch}")
    model.load_state_dict(state["model"])
    return model


def _arguments(kwargs):
    return "(" + ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) + ")" if kwargs else ""


def parameter_count(model):
    return int(sum(p.size for p in model.parameters()))


def load_dataset_flag(command, name, skip_bad=False, **kwargs):
    """:func:`refvit.data.load_dataset` for the ``--dataset`` flag: its errors name the flag and the value given,
    not the library function and its argument (``refvit train: error: --dataset /x: /x does not exist``).

    ``skip_bad`` (``--skip-bad-images``): an image file Pillow cannot read is left out, and each one left out
    is named on one line of stderr (``refvit train: warning: --dataset pets: skipping pets/dog/x.png: ...``);
    without it such a file is an error that names it and the flag."""
    import sys
    import warnings

    from refvit.data import load_dataset

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = load_dataset(name, skip_bad=skip_bad, **kwargs)
    except UserError as error:
        message = re.sub(r"^(load_dataset|load_npz_folder|load_image_folder): ", "", str(error))
        message = re.sub(r"^'(path|dataset)' must", "it must", message)
        if message.endswith("or skip unreadable files"):
            message += " with --skip-bad-images"
        raise UserError(f"{command}: --dataset {name}: {message}") from None
    for warning in caught:
        text = str(warning.message)
        if issubclass(warning.category, UserWarning) and text.startswith("load_image_folder: skipping "):
            reason = " ".join(text[len("load_image_folder: "):].split())
            print(f"refvit {command}: warning: --dataset {name}: {reason}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return dataset
