"""The five architectures: official variants (state_dict keys and numerics of the reference
PyTorch code) and small ``*_nano`` variants for 32x32 inputs.

``create_model(name, num_classes=..., img_size=...)``, ``list_models()``, ``model_info(name)``.
``create_model`` checks the arguments all models share (``num_classes`` from 0 to
``MAX_NUM_CLASSES``, ``in_chans``, ``img_size``, ``drop_rate``, ``drop_path_rate`` in ``[0, 1)``);
every model checks its input images at its entry (``(B, H, W, in_chans)`` of its parameters' dtype).
Each family lives in its own module here and registers its constructors with
``@register_model``.
"""
from refvit.models._registry import (
    MAX_NUM_CLASSES, ModelInfo, check_model_arguments, create_model, list_models, model_info, register_model,
)

__all__ = ["MAX_NUM_CLASSES", "ModelInfo", "check_model_arguments", "create_model", "list_models", "model_info",
           "register_model"]
