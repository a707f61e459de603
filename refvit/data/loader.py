"""``DataLoader``: batches of ``(images, labels)`` with seeded shuffling and augmentation.

Each pass (``for images, labels in loader``) is one epoch. With ``shuffle=True`` the order
is a fresh permutation from the loader's own generator (seeded by ``seed``) each epoch;
``augment`` (a callable on a batch, e.g. :class:`~refvit.data.augment.Compose`) is applied
to every batch. ``state_dict()`` holds the generator states of the loader and of the
augmentation, so a run restored from it sees the same batches as one never stopped.
"""
from __future__ import annotations

import copy
import math
import numbers

import numpy as np


class DataLoader:
    """``DataLoader(images (N, H, W, C), labels (N,), batch_size, shuffle=False, seed=0, augment=None,
    drop_last=False)``: yields ``(images (B, H, W, C), labels (B,))``, the last batch smaller
    unless ``drop_last``."""

    def __init__(self, images, labels, batch_size, shuffle=False, seed=0, augment=None, drop_last=False):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"DataLoader: 'images' must be a 4-D array (N, H, W, C); got shape {images.shape}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"DataLoader: 'labels' must have shape ({images.shape[0]},); got shape {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"DataLoader: 'labels' must be integers; got dtype {labels.dtype}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: 'batch_size' must be an integer >= 1; got {batch_size!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"DataLoader: 'augment' must be callable or None; got {type(augment).__name__}")
        self.images = images if images.dtype.kind == "f" else images.astype(np.float32)
        self.labels = labels.astype(np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.drop_last = bool(drop_last)
        self.rng = np.random.default_rng(seed)
        if self.drop_last and len(self) == 0:
            raise ValueError(f"DataLoader: 'batch_size' must be <= the number of images ({len(labels)}) with "
                             f"drop_last; got {batch_size}")

    @property
    def num_images(self):
        return len(self.labels)

    def __len__(self):
        """Batches per epoch."""
        if self.drop_last:
            return self.num_images // self.batch_size
        return math.ceil(self.num_images / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(self.num_images) if self.shuffle else np.arange(self.num_images)
        for number in range(len(self)):
            chosen = order[number * self.batch_size:(number + 1) * self.batch_size]
            images = self.images[chosen]
            if self.augment is not None:
                images = self.augment(images)
            yield np.ascontiguousarray(images), self.labels[chosen]

    def state_dict(self):
        state = {"rng": copy.deepcopy(self.rng.bit_generator.state)}
        if self.augment is not None and hasattr(self.augment, "state_dict"):
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state):
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        if "augment" in state and self.augment is not None:
            self.augment.load_state_dict(state["augment"])
