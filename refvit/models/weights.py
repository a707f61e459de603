"""Weights files in and out: ``.safetensors``, ``.npz`` and PyTorch's ``.pth``/``.pt``/``.bin``.

``load_weights(model, path)`` reads a file, unwraps the containers training scripts save
(``{"model": ...}``, ``{"state_dict": ...}``, EMA copies, DDP's ``module.`` prefix), and
copies the arrays into ``model`` with its ``load_state_dict`` (cast to the model's dtype).
``save_weights(model, path)`` writes the model's ``state_dict`` under PyTorch's key names, so
the file loads into the PyTorch model with ``load_state_dict``.

Formats, chosen by the file's extension:

* ``.safetensors``: the ``safetensors`` package's NumPy API (the ``safetensors`` extra:
  ``pip install 'refvit[safetensors]'``). Tensors NumPy has no type for (bfloat16) are read
  through PyTorch when it is installed, else refused with a message.
* ``.npz``: ``numpy.load(..., allow_pickle=False)``; a checkpoint of ``refvit train`` (an
  ``.npz`` with ``__meta__``) gives its ``model`` entry.
* ``.pth``, ``.pt``, ``.bin``: ``torch.load(..., weights_only=True, map_location="cpu")``,
  PyTorch's restricted unpickler: tensors, numbers, strings and containers only. A file that
  needs any other Python object (a pickled model, an ``argparse.Namespace``) is refused,
  never unpickled.

Damaged, truncated or refused files, and weights that do not fit the model, raise
:class:`~refvit.errors.UserError` naming the file.
"""
from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from refvit.errors import UserError, os_error_reason

SAFETENSORS_EXTENSIONS = (".safetensors",)
NPZ_EXTENSIONS = (".npz",)
TORCH_EXTENSIONS = (".pth", ".pt", ".bin")

# Container keys, tried in this order at each level of nesting.
MODEL_KEYS = ("state_dict", "model", "module")
EMA_KEYS = ("model_ema", "state_dict_ema", "ema")
DDP_PREFIX = "module."

__all__ = ["LoadedWeights", "head_prefixes", "load_weights", "read_weights", "save_weights"]


@dataclass
class LoadedWeights:
    """What :func:`load_weights` did: keys the model has and the file lacks (``missing``),
    keys the file has and the model lacks (``unexpected``; both empty with ``strict=True``), and
    the head keys left as they were in the model because the file's head has another size
    (``kept_head``) or the file's head keys that were dropped (``dropped_head``)."""

    path: str
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    kept_head: list = field(default_factory=list)
    dropped_head: list = field(default_factory=list)


def _extension(path):
    return os.path.splitext(os.fspath(path))[1].lower()


def _known_extensions():
    return ", ".join(SAFETENSORS_EXTENSIONS + NPZ_EXTENSIONS + TORCH_EXTENSIONS)


def _check_readable(path):
    if os.path.isdir(path):
        raise UserError(f"weights file {path} is a folder; expected a file ({_known_extensions()})")
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} does not exist")
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise UserError(f"weights file {path} cannot be read: {os_error_reason(error)}") from None
    if size == 0:
        raise UserError(f"weights file {path} is empty")


def _needs(package, extra, path, purpose):
    return UserError(f"reading {purpose} {path} needs the {package} package, which is not installed: "
                     f"pip install 'refvit[{extra}]' (or pip install {package})")


def _read_safetensors(path):
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise _needs("safetensors", "safetensors", path, "the .safetensors file") from None
    try:
        return dict(safetensors.numpy.load_file(path))
    except Exception as error:  # SafetensorError (damaged header, truncated data) or an unknown dtype
        text = str(error)
        if "bf16" in text.lower() or "bfloat16" in text.lower() or "data type" in text.lower():
            return _read_safetensors_through_torch(path, text)
        raise UserError(f"weights file {path} is not a readable .safetensors file: {_one_line(text)}") from None


def _read_safetensors_through_torch(path, reason):
    try:
        import safetensors.torch
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"weights file {path} holds tensors NumPy cannot represent ({_one_line(reason)}); "
                        f"install PyTorch to read it (they are converted to float32)") from None
    try:
        tensors = safetensors.torch.load_file(path, device="cpu")
    except Exception as error:
        raise UserError(f"weights file {path} is not a readable .safetensors file: {_one_line(error)}") from None
    return {key: _tensor_to_numpy(value) for key, value in tensors.items()}


def _read_npz(path):
    from refvit.train.checkpoint import META_KEY, load_checkpoint

    try:
        with np.load(path, allow_pickle=False) as archive:
            if META_KEY in archive.files:
                is_checkpoint = True
                arrays = None
            else:
                is_checkpoint = False
                arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as error:
        if isinstance(error, ValueError) and "pickle" in str(error).lower():
            raise UserError(f"weights file {path} holds Python objects (pickled arrays), which refvit does not "
                            f"read; save plain numeric arrays") from None
        raise UserError(f"weights file {path} is not a readable .npz archive: {_one_line(error) or 'truncated'}") \
            from None
    if is_checkpoint:
        state = load_checkpoint(path)
        if not isinstance(state.get("model"), dict):
            raise UserError(f"{path} is a refvit checkpoint without weights (no 'model' entry)")
        return state["model"]
    return arrays


def _tensor_to_numpy(tensor):
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy()


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise UserError(f"reading the PyTorch file {path} needs PyTorch, which is not installed; install it, or "
                        f"convert the file to .safetensors or .npz where PyTorch is installed") from None
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise UserError(f"weights file {path} was refused: it holds Python objects other than tensors, numbers and "
                        f"containers, which refvit never unpickles (torch.load with weights_only=True: "
                        f"{_first_line(error)}); save only the state_dict: torch.save(model.state_dict(), path)") \
            from None
    except Exception as error:  # noqa: BLE001 - torch.load reports damage as RuntimeError, EOFError, KeyError...
        raise UserError(f"weights file {path} is not a readable PyTorch file (damaged or truncated): "
                        f"{_first_line(error)}") from None
    return _to_numpy_tree(content)


def _to_numpy_tree(value):
    """Tensors become NumPy arrays in nested dicts; other values are kept."""
    try:
        import torch
    except ImportError:  # pragma: no cover - only called after torch.load
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        return _tensor_to_numpy(value)
    if isinstance(value, dict):
        return {key: _to_numpy_tree(item) for key, item in value.items()}
    return value


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _one_line(error):
    return " ".join(str(error).split())


def _is_state_dict(value):
    return isinstance(value, dict) and bool(value) and all(
        isinstance(key, str) and isinstance(item, np.ndarray) for key, item in value.items())


def unwrap(content, path, ema=False):
    """The ``state_dict`` inside ``content`` (what a file holds): containers are opened
    (``EMA_KEYS`` first with ``ema=True``, else ``MODEL_KEYS``), and a ``module.`` prefix on
    every key (``DistributedDataParallel``) is removed."""
    path = os.fspath(path)
    opened = []
    value = content
    for _ in range(4):  # a state_dict inside at most a few containers
        if not isinstance(value, dict):
            break
        if ema and not opened:
            found = next((key for key in EMA_KEYS if isinstance(value.get(key), dict)), None)
            if found is None:
                raise UserError(f"weights file {path} has no EMA copy (looked for {', '.join(EMA_KEYS)}; it holds "
                                f"{_keys_phrase(value)}); load it without ema=True")
        elif _is_state_dict(value):
            break
        else:
            found = next((key for key in MODEL_KEYS if isinstance(value.get(key), dict)), None)
            if found is None:
                break
        opened.append(found)
        value = value[found]
    if not _is_state_dict(value):
        where = f" (inside {' -> '.join(repr(key) for key in opened)})" if opened else ""
        raise UserError(f"weights file {path} holds no state_dict{where}: expected a mapping of names to tensors, "
                        f"alone or under one of {', '.join(MODEL_KEYS + EMA_KEYS)}; it holds {_keys_phrase(value)}")
    if all(key.startswith(DDP_PREFIX) for key in value):
        value = {key[len(DDP_PREFIX):]: item for key, item in value.items()}
    return value


def _keys_phrase(value):
    if not isinstance(value, dict):
        return f"a {type(value).__name__}"
    keys = [repr(key) for key in list(value)[:6]]
    if not keys:
        return "an empty mapping"
    others = [key for key, item in value.items() if not isinstance(item, np.ndarray)]
    detail = f"; {len(others)} of its entries are not tensors" if others and len(others) < len(value) else ""
    return "the keys " + ", ".join(keys) + (", ..." if len(value) > 6 else "") + detail


def read_weights(path, ema=False):
    """The ``state_dict`` a weights file holds, as NumPy arrays, with containers unwrapped.

    ``ema=True`` takes the EMA copy (``model_ema``, ``state_dict_ema`` or ``ema``) and fails
    when the file has none.
    """
    path = os.fspath(path)
    extension = _extension(path)
    if extension not in SAFETENSORS_EXTENSIONS + NPZ_EXTENSIONS + TORCH_EXTENSIONS:
        raise UserError(f"weights file {path}: unknown extension {extension or '(none)'!r}; refvit reads "
                        f"{_known_extensions()}")
    _check_readable(path)
    if extension in SAFETENSORS_EXTENSIONS:
        content = _read_safetensors(path)
    elif extension in NPZ_EXTENSIONS:
        content = _read_npz(path)
    else:
        content = _read_torch(path)
    return unwrap(content, path, ema=ema)


def head_prefixes(model):
    """The classifier heads' key prefixes: the model's top-level children whose name ends in
    ``head`` (``head.``, ``aux_head.``; CoAtNet's ``head.`` holds ``head.fc``). A file's keys
    under a top-level name ending in ``head`` count as head keys too (DualViT's ``aux_head``
    in a file, loaded into a model built with ``token_label=False``)."""
    return tuple(f"{name}." for name in model._modules if name.endswith("head"))


def _split_head(model, weights):
    """Drop the file's head keys that do not fit the model's head (another ``num_classes``, or no head)."""
    expected = model.state_dict()
    prefixes = head_prefixes(model) + tuple(sorted({f"{key.split('.')[0]}." for key in weights
                                                    if "." in key and key.split(".")[0].endswith("head")}))
    if not prefixes:
        return weights, [], []
    in_head = lambda key: key.startswith(prefixes)  # noqa: E731
    file_head = [key for key in weights if in_head(key)]
    model_head = [key for key in expected if in_head(key)]
    mismatched = [key for key in file_head if key in expected
                  and tuple(np.shape(weights[key])) != tuple(expected[key].shape)]
    extra = [key for key in file_head if key not in expected]
    absent = [key for key in model_head if key not in weights]
    if not (mismatched or extra or absent):
        return weights, [], []
    dropped = set(mismatched) | set(extra)
    kept = [key for key in model_head if key in dropped or key in absent]
    weights = {key: value for key, value in weights.items() if key not in dropped}
    weights.update({key: expected[key].copy() for key in kept})  # the model's own head, written back unchanged
    return weights, kept, sorted(dropped, key=file_head.index)


def load_weights(model, path, strict=True, ema=False):
    """Load a weights file into ``model`` in place; return a :class:`LoadedWeights`.

    ``path``: ``.safetensors``, ``.npz`` or ``.pth``/``.pt``/``.bin`` (module docstring).
    Containers are unwrapped (``ema=True`` chooses the EMA copy), a DDP ``module.`` prefix
    is removed, and arrays are cast to the model's dtypes. When the file's classifier head
    (:func:`head_prefixes`) has another number of classes than the model's, or the model has no
    head, the head keys are left as the model has them (freshly initialised for a new model)
    and the rest is loaded; a ``UserWarning`` says so in one line. Any other missing or
    unexpected key (with ``strict=True``) or any mis-shaped key raises a
    :class:`~refvit.errors.UserError` with the model's ``load_state_dict`` listing.
    """
    path = os.fspath(path)
    weights = read_weights(path, ema=ema)
    weights, kept, dropped = _split_head(model, weights)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=strict)
    except ValueError as error:
        raise UserError(f"weights file {path} does not fit {getattr(model, 'model_name', type(model).__name__)}: "
                        f"{error}") from None
    result = LoadedWeights(path, list(missing), list(unexpected), kept, dropped)
    if kept or dropped:
        warnings.warn(f"load_weights: {path}: the classifier head does not match the model's "
                      f"({len(dropped)} file keys dropped, {len(kept)} model keys left as initialised: "
                      f"{', '.join(kept or dropped)}); the rest was loaded", UserWarning, stacklevel=2)
    return result


def _contiguous(model):
    # np.ascontiguousarray would turn 0-d arrays (BatchNorm's num_batches_tracked) into shape (1,)
    return {key: np.require(value, requirements="C") for key, value in model.state_dict().items()}


def save_weights(model, path):
    """Write ``model.state_dict()`` to ``path`` (atomically) in the format its extension names:
    ``.safetensors`` (the ``safetensors`` extra), ``.npz``, or ``.pth``/``.pt``/``.bin``
    (``torch.save`` of a dict of tensors; needs PyTorch). Keys are PyTorch's names, so the
    file loads into the PyTorch model with ``load_state_dict``. Returns ``path``."""
    from refvit.train.checkpoint import atomic_write

    path = os.fspath(path)
    extension = _extension(path)
    arrays = _contiguous(model)
    if extension in SAFETENSORS_EXTENSIONS:
        try:
            import safetensors.numpy
        except ImportError:
            raise UserError(f"writing {path} needs the safetensors package, which is not installed: "
                            f"pip install 'refvit[safetensors]' (or write .npz)") from None
        data = safetensors.numpy.save(arrays, metadata={"format": "pt"})
        atomic_write(path, lambda handle: handle.write(data))
    elif extension in NPZ_EXTENSIONS:
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    elif extension in TORCH_EXTENSIONS:
        try:
            import torch
        except ImportError:
            raise UserError(f"writing {path} needs PyTorch, which is not installed; write .safetensors or .npz "
                            f"instead") from None
        tensors = {key: torch.from_numpy(value.copy()) for key, value in arrays.items()}
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
    else:
        raise UserError(f"cannot write weights to {path}: unknown extension {extension or '(none)'!r}; refvit writes "
                        f"{_known_extensions()}")
    return path
