"""Model registry: each family module decorates its constructors with :func:`register_model`."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from refvit._validate import (
    MAX_NUM_CLASSES, as_tuple, check_images, check_int, check_num_classes, check_probability,
)

_MODELS = {}

__all__ = ["MAX_NUM_CLASSES", "ModelInfo", "check_image_input", "check_model_arguments", "create_model",
           "list_models", "model_info", "register_model"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    constructor: Callable
    img_size: int
    description: str


def register_model(family: str, img_size: int, description: str = ""):
    """Decorator: ``@register_model("dinat", 224, "DiNAT-Mini")`` on ``def dinat_mini(**kwargs)``."""

    def decorate(constructor):
        name = constructor.__name__
        if name in _MODELS:
            raise ValueError(f"register_model: a model named {name!r} is already registered")
        _MODELS[name] = ModelInfo(name, family, constructor, img_size, description or name)
        return constructor

    return decorate


def _import_families():
    import refvit.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"refvit.models.{info.name}")


def list_models(family: str | None = None):
    """Names of all registered models (of one ``family`` when given), sorted."""
    _import_families()
    return sorted(name for name, info in _MODELS.items() if family is None or info.family == family)


def model_info(name: str) -> ModelInfo:
    _import_families()
    if name not in _MODELS:
        raise ValueError(f"create_model: unknown model {name!r}; available: {', '.join(list_models()) or 'none'}")
    return _MODELS[name]


def check_model_arguments(owner, **arguments):
    """Check the arguments every model shares; those given as ``None`` or left out are skipped.

    ``num_classes``: an integer in ``[0, MAX_NUM_CLASSES]`` (0: no head); ``in_chans``: an
    integer >= 1; ``img_size``: an integer >= 1 or a pair of them; ``drop_rate``,
    ``attn_drop_rate``: probabilities in ``[0, 1)``; ``drop_path_rate``: the last block's
    stochastic-depth probability, in ``[0, 1)``. Errors name ``owner`` (the model).
    """
    checked = {}
    for arg, value in arguments.items():
        if value is None:
            continue
        if arg == "num_classes":
            checked[arg] = check_num_classes(owner, value)
        elif arg == "in_chans":
            checked[arg] = check_int(owner, arg, value, minimum=1)
        elif arg == "img_size":
            checked[arg] = as_tuple(owner, arg, value, 2, minimum=1)
        elif arg in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            checked[arg] = check_probability(owner, arg, value, below_one=True)
        else:
            raise KeyError(f"check_model_arguments: no check for {arg!r}")
    return checked


def check_image_input(model, x, size=None, size_ok=None):
    """Check a model's input ``x`` at its entry: ``(B, H, W, model.in_chans)`` of the model's
    parameters' dtype (float32 or float64), and ``(H, W) == size`` (or ``size_ok``) when given.
    Errors name the model (``model.model_name``)."""
    img_size = tuple(model.img_size) if isinstance(model.img_size, (tuple, list)) else (model.img_size,) * 2
    first = next(model.parameters(), None)
    return check_images(model.model_name, x, model.in_chans, size=size, built_for=img_size, size_ok=size_ok,
                        float_dtype=None if first is None else first.dtype)


SHARED_ARGUMENTS = ("num_classes", "in_chans", "img_size", "drop_rate", "attn_drop_rate", "drop_path_rate")


def create_model(name: str, pretrained=None, pretrained_ema=False, **kwargs):
    """Build a model by name: ``create_model("dinat_mini", num_classes=10, img_size=224)``.

    ``pretrained``: a weights file (``.safetensors``, ``.npz``, ``.pth``/``.pt``/``.bin``)
    loaded with :func:`refvit.models.load_weights` (``ema=pretrained_ema``); with another
    ``num_classes`` than the file's, the head keeps its fresh initialisation and the rest is
    loaded.

    The arguments all models share are checked first, so errors name the model: ``num_classes``
    must be an integer from 0 to ``MAX_NUM_CLASSES`` (100000), ``drop_path_rate`` in ``[0, 1)``, and
    so on (:func:`check_model_arguments`). The model's ``model_name`` is ``name``, which its
    input errors quote.
    """
    info = model_info(name)
    check_model_arguments(name, **{arg: kwargs[arg] for arg in SHARED_ARGUMENTS if arg in kwargs})
    model = info.constructor(**kwargs)
    if hasattr(model, "model_name"):
        model.model_name = name
    if pretrained is not None:
        from refvit.models.weights import load_weights

        load_weights(model, pretrained, ema=pretrained_ema)
    return model
