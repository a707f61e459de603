"""The five architectures: official variants (state_dict keys and numerics of the reference
PyTorch code) and small ``*_nano`` variants for 32x32 inputs.

``create_model(name, num_classes=..., img_size=...)``, ``list_models()``, ``model_info(name)``.
Each family lives in its own module here and registers its constructors with
``@register_model``.
"""
from refvit.models._registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
