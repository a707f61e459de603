"""Data sets by name, for the command line: ``"digits"``, ``"shapes"``, a folder of ``.npz`` files or an
image folder.

:func:`load_dataset` returns a :class:`Dataset` with both splits in ``[0, 1]`` (raw, not
normalised) and the per-channel ``mean``/``std`` of the training split, which the training
and evaluation loaders use to normalise (see :func:`make_loaders`).

A folder with ``train/`` and ``test/`` subfolders uses them as the splits; a folder of
``.npz`` files alone is split 80/20 by a permutation seeded with ``SPLIT_SEED``. A folder's
``num_classes`` is its largest label + 1 (labels are at most ``MAX_NUM_CLASSES - 1``, see
:mod:`refvit.data.npz_folder`); ``Dataset.in_chans`` is its images' channel count (1 for
grey images), the ``in_chans`` a model for it is built with.

A folder is read as ``.npz`` files when it holds ``.npz`` files directly or in ``train/``;
otherwise, when it has subfolders, as an image folder (one subfolder per class of
``.png``/``.jpg``/``.jpeg`` files, ``train/`` and ``val/`` or ``test/`` when present; see
:mod:`refvit.data.image_folder` for the split, channel rule, resizing and when the set is
memory-mapped), resized to ``size``. An image folder's ``Dataset.class_names`` lists its class folder names in index
order; the built-in data sets and ``.npz`` folders have ``class_names = None``.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from refvit.data.augment import Compose, Normalize, RandomCrop, RandomHorizontalFlip, channel_mean_std
from refvit.data.digits import load_digits
from refvit.data.image_folder import load_image_folder
from refvit.data.loader import DataLoader
from refvit.data.npz_folder import load_npz_folder
from refvit.data.shapes import SHAPE_CLASSES, make_shapes
from refvit.errors import UserError

NAMED_DATASETS = ("digits", "shapes")
SHAPES_TRAIN, SHAPES_TEST = 3000, 600
SPLIT_SEED = 0


class Dataset(NamedTuple):
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    flip: bool  # whether mirrored images keep their class
    class_names: list | None = None  # an image folder's class folder names, in label order

    @property
    def in_chans(self) -> int:
        """Channels per image (``C`` of ``(N, H, W, C)``): the ``in_chans`` a model for it needs."""
        return int(self.train_images.shape[-1])


def _folder_splits(path):
    train_dir, test_dir = os.path.join(path, "train"), os.path.join(path, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        splits = load_npz_folder(train_dir) + load_npz_folder(test_dir)
        if splits[0].shape[1:] != splits[2].shape[1:]:
            raise UserError(f"load_dataset: train/ and test/ must hold images of one (H, W, C); got "
                            f"{splits[0].shape[1:]} in {train_dir} and {splits[2].shape[1:]} in {test_dir}")
        return splits
    images, labels = load_npz_folder(path)
    if len(labels) < 2:
        raise UserError(f"load_dataset: a folder without train/ and test/ needs at least 2 images; {path} has "
                         f"{len(labels)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = max(1, len(labels) // 5)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return images[train], labels[train], images[test], labels[test]


def _holds_npz(path):
    return any(os.path.isdir(folder) and any(entry.endswith(".npz") for entry in os.listdir(folder))
               for folder in (path, os.path.join(path, "train")))


def _has_subfolders(path):
    return any(entry.is_dir() and not entry.name.startswith(".") for entry in os.scandir(path))


def load_dataset(name, size=32, skip_bad=False, max_bytes=None, cache_dir=None):
    """``"digits"`` (10 classes), ``"shapes"`` (6 classes) or a folder path -> :class:`Dataset`.

    ``size``: the side (or ``(height, width)``) images are resized to, for the built-in data sets
    and image folders; ``.npz`` folders keep their images' size. ``skip_bad``: for image folders,
    leave out files Pillow cannot read with a warning instead of raising a ``UserError``.
    ``max_bytes``, ``cache_dir``: for image folders, the memory budget above which the resized set
    is memory-mapped from ``.npy`` files, and the folder of those files
    (see :mod:`refvit.data.image_cache`).
    """
    class_names = None
    if name == "digits":
        splits = load_digits("train", size) + load_digits("test", size)
        num_classes, flip = 10, False
    elif name == "shapes":
        splits = make_shapes(SHAPES_TRAIN, size, seed=1) + make_shapes(SHAPES_TEST, size, seed=2)
        num_classes, flip = len(SHAPE_CLASSES), True
    elif os.path.isdir(name) and not _holds_npz(os.fspath(name)):
        if not _has_subfolders(name):
            raise UserError(f"load_dataset: 'dataset' must be a folder of .npz files or of one subfolder per class "
                            f"of .png/.jpg/.jpeg images; {name} has neither")
        class_names, *splits = load_image_folder(name, size=size, skip_bad=skip_bad, max_bytes=max_bytes,
                                                 cache_dir=cache_dir)
        if not len(splits[3]):
            raise UserError(f"load_dataset: the test split of {name} has no images (a class needs at least 2 "
                            f"images to give one to the test split, or add a val/ folder)")
        num_classes, flip = len(class_names), True
    elif os.path.sep in str(name) or os.path.exists(name):
        splits = _folder_splits(os.fspath(name))
        for labels, split in ((splits[1], "training"), (splits[3], "test")):
            if not len(labels):
                raise UserError(f"load_dataset: the {split} split of {name} has no images")
        num_classes, flip = int(max(splits[1].max(), splits[3].max())) + 1, True
    else:
        raise UserError(f"load_dataset: 'dataset' must be {' or '.join(NAMED_DATASETS)} or a folder (of .npz "
                         f"files or of class subfolders of images); got {name!r} (no such folder)")
    train_images, train_labels, test_images, test_labels = splits
    mean, std = channel_mean_std(train_images)
    return Dataset(str(name), train_images, train_labels, test_images, test_labels, num_classes, mean, std, flip,
                   class_names)


def make_loaders(dataset, batch_size, seed=0, crop_padding=4, flip=None):
    """``(train_loader, test_loader)``: training batches shuffled, randomly cropped (and flipped when
    the data set allows it) and normalised; test batches in order, only normalised."""
    flip = dataset.flip if flip is None else flip
    normalize = Normalize(dataset.mean, dataset.std)
    train_steps = []
    if crop_padding:
        train_steps.append(RandomCrop(crop_padding, seed=seed + 1))
    if flip:
        train_steps.append(RandomHorizontalFlip(0.5, seed=seed + 2))
    train = DataLoader(dataset.train_images, dataset.train_labels, batch_size, shuffle=True, seed=seed,
                       augment=Compose(train_steps + [normalize]))
    test = DataLoader(dataset.test_images, dataset.test_labels, batch_size, shuffle=False,
                      augment=Compose([normalize]))
    return train, test
