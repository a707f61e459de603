"""Your own images: a folder of ``.npz`` files, each with ``images (N, H, W, C)`` and ``labels (N,)``.

Files are read in name order and concatenated. Integer images (e.g. ``uint8``) are divided
by 255; float images are kept as they are (as float32). Labels must be integers >= 0.
Made with ``np.savez(path, images=images, labels=labels)``.
"""
from __future__ import annotations

import os

import numpy as np

REQUIRED_KEYS = ("images", "labels")


def _read_one(path):
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in REQUIRED_KEYS if key not in archive.files]
        if missing:
            raise ValueError(f"load_npz_folder: each file must hold arrays 'images' and 'labels'; "
                             f"{path} holds {', '.join(map(repr, archive.files)) or 'nothing'}")
        images, labels = archive["images"], archive["labels"]
    if images.ndim != 4:
        raise ValueError(f"load_npz_folder: 'images' must be 4-D (N, H, W, C); got shape {images.shape} in {path}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"load_npz_folder: 'labels' must have shape ({images.shape[0]},); got shape "
                         f"{labels.shape} in {path}")
    if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise ValueError(f"load_npz_folder: 'labels' must be integers >= 0; got dtype {labels.dtype} in {path}")
    if images.dtype.kind in "iub":
        images = images.astype(np.float32) / 255.0
    elif images.dtype.kind == "f":
        images = images.astype(np.float32)
    else:
        raise ValueError(f"load_npz_folder: 'images' must be integer or float; got dtype {images.dtype} in {path}")
    return images, labels.astype(np.int64)


def npz_files(path):
    """The ``.npz`` files directly inside the folder ``path``, sorted by name."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_npz_folder: 'path' must be an existing folder; {path} does not exist")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"load_npz_folder: 'path' must be a folder of .npz files; {path} is a file")
    files = sorted(name for name in os.listdir(path) if name.endswith(".npz"))
    if not files:
        raise FileNotFoundError(f"load_npz_folder: 'path' must hold .npz files; {path} has none")
    return [os.path.join(path, name) for name in files]


def load_npz_folder(path):
    """``(images (N, H, W, C) float32, labels (N,) int64)`` from every ``.npz`` file in ``path``."""
    parts = [_read_one(file) for file in npz_files(os.fspath(path))]
    shapes = {images.shape[1:] for images, _ in parts}
    if len(shapes) > 1:
        raise ValueError(f"load_npz_folder: all files must have images of one (H, W, C); got "
                         f"{', '.join(str(s) for s in sorted(shapes))} in {path}")
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return images, labels
