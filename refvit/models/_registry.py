"""Model registry: each family module decorates its constructors with :func:`register_model`."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

_MODELS = {}


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


def create_model(name: str, **kwargs):
    """Build a model by name: ``create_model("dinat_mini", num_classes=10, img_size=224)``."""
    return model_info(name).constructor(**kwargs)
