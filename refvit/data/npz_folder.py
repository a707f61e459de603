"""Your own images: a folder of ``.npz`` files, each with ``images (N, H, W, C)`` and ``labels (N,)``.

Files are read in name order and concatenated. Integer images (e.g. ``uint8``) are divided
by 255; float images are kept as they are (as float32). Labels must be integers from 0 to
``MAX_NUM_CLASSES - 1`` (99999): the model gets one output per class up to the largest label.
Files are read without unpickling; a file that is not a numeric ``.npz`` archive (damaged,
another format, object arrays) is a :class:`~refvit.errors.UserError` naming it.
Made with ``np.savez(path, images=images, labels=labels)``.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from refvit._validate import MAX_NUM_CLASSES
from refvit.errors import UserError

REQUIRED_KEYS = ("images", "labels")


def _read_arrays(path):
    """``(images, labels)`` as stored in ``path``; every way the file can fail to read is a
    :class:`UserError` naming it (never NumPy's advice to allow pickled data)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"load_npz_folder: {path} is not a readable .npz file (made with np.savez(path, "
                        f"images=..., labels=...)); reading it failed: {_reason(error)}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"load_npz_folder: {path} holds a single array, not an .npz archive with arrays "
                        f"'images' and 'labels' (save it with np.savez(path, images=..., labels=...))")
    with archive:
        missing = [key for key in REQUIRED_KEYS if key not in archive.files]
        if missing:
            raise UserError(f"load_npz_folder: each file must hold arrays 'images' and 'labels'; "
                            f"{path} holds {', '.join(map(repr, archive.files)) or 'nothing'}")
        arrays = []
        for key in REQUIRED_KEYS:
            try:
                arrays.append(archive[key])
            except ValueError as error:
                if "Object arrays" in str(error):
                    raise UserError(f"load_npz_folder: '{key}' in {path} is an object array; refvit reads only "
                                    f"numeric arrays (save '{key}' with an integer or float dtype)") from None
                raise UserError(f"load_npz_folder: '{key}' in {path} cannot be read: {_reason(error)}") from None
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise UserError(f"load_npz_folder: '{key}' in {path} cannot be read (the file is damaged): "
                                f"{_reason(error)}") from None
    return tuple(arrays)


def _reason(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if "pickle" in text:  # NumPy's message about pickled data would invite an unsafe load
        text = "not an .npz archive"
    return text


def _read_one(path):
    images, labels = _read_arrays(path)
    if images.ndim != 4:
        raise UserError(f"load_npz_folder: 'images' must be 4-D (N, H, W, C); got shape {images.shape} in {path}")
    if labels.shape != images.shape[:1]:
        raise UserError(f"load_npz_folder: 'labels' must have shape ({images.shape[0]},); got shape "
                        f"{labels.shape} in {path}")
    if labels.dtype.kind not in "iu":
        raise UserError(f"load_npz_folder: 'labels' must be integers >= 0; got dtype {labels.dtype} in {path}")
    if labels.size and labels.min() < 0:
        raise UserError(f"load_npz_folder: 'labels' must be integers >= 0; got label {int(labels.min())} in {path}")
    if labels.size and labels.max() >= MAX_NUM_CLASSES:
        raise UserError(f"load_npz_folder: 'labels' must be class indices 0 to {MAX_NUM_CLASSES - 1} (a head "
                        f"has one output per class, up to {MAX_NUM_CLASSES}); got label {int(labels.max())} in "
                        f"{path}")
    if images.dtype.kind in "iub":
        images = images.astype(np.float32) / 255.0
    elif images.dtype.kind == "f":
        images = images.astype(np.float32)
    else:
        raise UserError(f"load_npz_folder: 'images' must be integer or float; got dtype {images.dtype} in {path}")
    return images, labels.astype(np.int64)


def npz_files(path):
    """The ``.npz`` files directly inside the folder ``path``, sorted by name."""
    if not os.path.exists(path):
        raise UserError(f"load_npz_folder: 'path' must be an existing folder; {path} does not exist")
    if not os.path.isdir(path):
        raise UserError(f"load_npz_folder: 'path' must be a folder of .npz files; {path} is a file")
    files = sorted(name for name in os.listdir(path) if name.endswith(".npz"))
    if not files:
        raise UserError(f"load_npz_folder: 'path' must hold .npz files; {path} has none")
    return [os.path.join(path, name) for name in files]


def load_npz_folder(path):
    """``(images (N, H, W, C) float32, labels (N,) int64)`` from every ``.npz`` file in ``path``."""
    parts = [_read_one(file) for file in npz_files(os.fspath(path))]
    shapes = {images.shape[1:] for images, _ in parts}
    if len(shapes) > 1:
        raise UserError(f"load_npz_folder: all files must have images of one (H, W, C); got "
                         f"{', '.join(str(s) for s in sorted(shapes))} in {path}")
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return images, labels
