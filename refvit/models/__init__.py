"""The five architectures: official variants (state_dict keys and numerics of the reference
PyTorch code) and small ``*_nano`` variants for 32x32 inputs.

``create_model(name, num_classes=..., img_size=..., pretrained=path)``, ``list_models()``,
``model_info(name)``; ``load_weights(model, path)`` and ``save_weights(model, path)`` read and
write ``.safetensors``, ``.npz`` and PyTorch ``.pth`` weights files (:mod:`refvit.models.weights`).
``create_model`` checks the arguments all models share (``num_classes`` from 0 to
``MAX_NUM_CLASSES``, ``in_chans``, ``img_size``, ``drop_rate``, ``drop_path_rate`` in ``[0, 1)``);
every model checks its input images at its entry (``(B, H, W, in_chans)`` of its parameters' dtype).
Each family lives in its own module here and registers its constructors with
``@register_model``.
"""
from refvit.models._registry import (
    MAX_NUM_CLASSES, ModelInfo, check_model_arguments, create_model, list_models, model_info, register_model,
)
from refvit.models.weights import LoadedWeights, load_weights, read_weights, save_weights

__all__ = ["MAX_NUM_CLASSES", "LoadedWeights", "ModelInfo", "check_model_arguments", "create_model", "list_models",
           "load_weights", "model_info", "read_weights", "register_model", "save_weights"]
