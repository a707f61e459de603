"""``refvit predict``: the top-k classes of a ``refvit train`` model for images of your own.

Each image is brought to the model's channel count and input size, then normalised with
the mean and std saved in the checkpoint:

* PNG and JPEG, through Pillow (the ``images`` extra), exactly as an image folder is read for
  training: ``convert("RGB")`` (or ``"L"`` for a 1-channel model; alpha dropped), resized with
  Pillow's ``BILINEAR`` filter (anti-aliased when shrinking), divided by 255.
* ``.npy`` arrays ``(H, W, C)`` or ``(H, W)``: integer pixels are divided by 255 (as for
  ``.npz`` data sets), float pixels taken as they are; an alpha channel (the last of 2 or 4)
  is dropped, grey is repeated into RGB, RGB becomes grey by the mean of its channels; then
  **bilinear** resizing with half-pixel centres (PyTorch's ``interpolate(..., mode="bilinear",
  align_corners=False)``, not anti-aliased).

Output: one block per image, its file name, then ``k`` lines ``rank. class  probability``,
with the class names saved in the checkpoint when the training data set had them.
"""
from __future__ import annotations

import os

import numpy as np

from refvit.errors import UserError

COMMAND = "predict"
PILLOW_EXTENSIONS = (".png", ".jpg", ".jpeg")


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.npz written by refvit train")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help=".npy (H, W, C) arrays, or PNG/JPEG with Pillow")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per image (default: 5)")
    parser.add_argument("--backend", default="cpu", help="numpy, cpu or cuda (default: cpu)")


def _read_npy(path):
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UserError(f"{COMMAND}: {path} is not a readable .npy array: {' '.join(str(error).split())}") from None
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4):
        pass
    elif array.ndim == 2:
        array = array[..., None]
    else:
        raise UserError(f"{COMMAND}: {path} holds an array of shape {array.shape}; an image is (H, W) or (H, W, C) "
                        f"with C of 1 to 4")
    if array.dtype.kind not in "uif" or array.dtype.kind == "b":
        raise UserError(f"{COMMAND}: {path} holds {array.dtype} values; an image has integer or float pixels")
    return array


def _read_with_pillow(path, channels, height, width):
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UserError(f"{COMMAND}: {path}: reading PNG and JPEG needs Pillow (pip install pillow, or "
                        f"'refvit[images]'); .npy arrays need nothing") from None
    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UserError(f"{COMMAND}: {path} is not a readable image: {' '.join(str(error).split())}") from None
    if channels not in (1, 3):
        raise UserError(f"{COMMAND}: {path}: the model takes {channels}-channel images; PNG and JPEG give 1 or 3")
    return (array[..., None] if array.ndim == 2 else array) / np.float32(255.0)


def read_image(path, channels, height, width):
    """``(height, width, channels)`` float32 pixels of ``path``, before normalisation (module docstring)."""
    extension = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise UserError(f"{COMMAND}: {path} " + ("is a folder" if os.path.isdir(path) else "does not exist"))
    if extension in PILLOW_EXTENSIONS:
        return _read_with_pillow(path, channels, height, width)
    if extension != ".npy":
        raise UserError(f"{COMMAND}: {path}: unknown image type {extension or '(none)'!r}; give .npy, .png, .jpg "
                        f"or .jpeg")
    array = _read_npy(path)
    if array.dtype.kind in "ui":
        array = array.astype(np.float32) / np.float32(255.0)
    else:
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise UserError(f"{COMMAND}: {path} holds NaN or infinite pixels")
    try:
        array = convert_channels(array, channels)
    except ValueError:
        raise UserError(f"{COMMAND}: {path} has {array.shape[-1]} channels; the model takes {channels}") from None
    return resize_bilinear(array, height, width)


def convert_channels(image, channels):
    """``image (H, W, C)`` with ``channels`` channels: alpha (the 2nd of 2, the 4th of 4) dropped,
    grey repeated, RGB averaged into grey."""
    if image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.shape[-1] == channels:
        return image
    if image.shape[-1] == 1:
        return np.repeat(image, channels, axis=-1)
    if channels == 1:
        return image.mean(axis=-1, keepdims=True)
    raise ValueError(f"convert_channels: cannot turn {image.shape[-1]} channels into {channels}")


def resize_bilinear(image, height, width):
    """``image (H, W, C)`` resized to ``(height, width, C)``; each output pixel centre maps to
    ``(i + 0.5) * H / height - 0.5`` in the input, clamped to the edges (``align_corners=False``)."""
    def axis(out, size):
        position = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        return low, high, (position - low).astype(np.float32)

    if image.shape[:2] == (height, width):
        return image
    y0, y1, wy = axis(height, image.shape[0])
    x0, x1, wx = axis(width, image.shape[1])
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return (top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]).astype(np.float32)


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def run_from_args(args):
    from refvit.autograd import no_grad
    from refvit.backend import use_backend
    from refvit.train.checkpoint import load_training_checkpoint
    from refvit.train.commands.common import check_backend, check_number, model_from_checkpoint
    from refvit.train.compile_notice import model_dtype, watch_compiles

    check_number(COMMAND, "--top-k", args.top_k, 1, integer=True)
    check_backend(COMMAND, args.backend)
    state = load_training_checkpoint(args.checkpoint)
    info = state["info"]
    mean, std = np.asarray(info["mean"], np.float32), np.asarray(info["std"], np.float32)
    img_size = info["model_kwargs"]["img_size"]
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    names = info.get("class_names")
    num_classes = info["model_kwargs"]["num_classes"]
    # every file is read and checked before the model is built
    batch = [(read_image(path, len(mean), height, width) - mean) / std for path in args.images]
    model = model_from_checkpoint(COMMAND, args.checkpoint, state)
    model.eval()
    with use_backend(args.backend), no_grad(), watch_compiles(args.backend, model_dtype(model)):
        logits = model(np.stack(batch).astype(np.float32)).data
    logits = np.asarray(logits.copy_to_host() if hasattr(logits, "copy_to_host") else logits, dtype=np.float64)
    probabilities = softmax(logits)
    k = min(args.top_k, num_classes)
    for path, row in zip(args.images, probabilities):
        print(path)
        for rank, index in enumerate(np.argsort(-row, kind="stable")[:k], start=1):
            label = f"{index} {names[index]}" if names is not None and index < len(names) else f"{index}"
            print(f"  {rank}. {label}  {row[index]:.4f}")
    return 0
