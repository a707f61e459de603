"""Seeded batch augmentations and normalisation for channels-last images ``(B, H, W, C)``.

Each random augmentation owns a NumPy generator; ``state_dict()``/``load_state_dict()``
save and restore it, so a resumed training run draws the same crops and flips as an
uninterrupted one.

* :class:`RandomCrop`: zero-pad by ``padding`` on every side, cut a random ``H x W`` window
  per image (a shift of up to ``padding`` pixels).
* :class:`RandomHorizontalFlip`: mirror each image left-right with probability ``p``.
  Leave it off for digits: a mirrored 2, 3, 5 or 7 is no longer that digit.
* :class:`Normalize`: ``(x - mean) / std`` per channel (deterministic).
* :class:`Compose`: apply several in order.
"""
from __future__ import annotations

import copy

import numpy as np


class _Seeded:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def state_dict(self):
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])


class RandomCrop(_Seeded):
    """Random shifts of up to ``padding`` pixels, filled with zeros."""

    def __init__(self, padding=4, seed=0):
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"RandomCrop: 'padding' must be an integer >= 0; got {padding!r}")
        super().__init__(seed)
        self.padding = int(padding)

    def __call__(self, images):
        batch, height, width, _ = images.shape
        pad = self.padding
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        tops = self.rng.integers(0, 2 * pad + 1, size=batch)
        lefts = self.rng.integers(0, 2 * pad + 1, size=batch)
        out = np.empty_like(images)
        for index in range(batch):
            out[index] = padded[index, tops[index]:tops[index] + height, lefts[index]:lefts[index] + width]
        return out


class RandomHorizontalFlip(_Seeded):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p=0.5, seed=0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: 'p' must be in [0, 1]; got {p!r}")
        super().__init__(seed)
        self.p = float(p)

    def __call__(self, images):
        flip = self.rng.random(images.shape[0]) < self.p
        out = images.copy()
        out[flip] = images[flip, :, ::-1]
        return out


class Normalize:
    """``(images - mean) / std`` per channel; ``mean``, ``std`` of shape ``(C,)``."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float64).ravel()
        self.std = np.asarray(std, dtype=np.float64).ravel()
        if self.mean.shape != self.std.shape or np.any(self.std <= 0):
            raise ValueError(f"Normalize: 'std' must be positive with the shape of 'mean' {self.mean.shape}; "
                             f"got {self.std!r}")

    def __call__(self, images):
        return ((images - self.mean) / self.std).astype(images.dtype)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Compose:
    """Apply ``transforms`` in order; their states are saved together."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, images):
        for transform in self.transforms:
            images = transform(images)
        return images

    def state_dict(self):
        return {"transforms": [t.state_dict() for t in self.transforms]}

    def load_state_dict(self, state):
        saved = state["transforms"]
        if len(saved) != len(self.transforms):
            raise ValueError(f"Compose.load_state_dict: 'state' must hold {len(self.transforms)} transform "
                             f"states; got {len(saved)}")
        for transform, entry in zip(self.transforms, saved):
            transform.load_state_dict(entry)


STATS_BLOCK_VALUES = 2**20


def channel_mean_std(images):
    """Per-channel mean and standard deviation of ``images (N, H, W, C)``, as float64 ``(C,)`` arrays.

    Read in blocks of about ``STATS_BLOCK_VALUES`` values (two passes: the mean, then the squared
    deviations from it), so a memory-mapped set is never copied into memory whole."""
    n, channels = images.shape[0], images.shape[-1]
    if n == 0:
        values = np.asarray(images, dtype=np.float64).reshape(-1, channels)
        return values.mean(axis=0), np.maximum(values.std(axis=0), 1e-8)
    per_image = int(np.prod(images.shape[1:]))
    step = max(1, STATS_BLOCK_VALUES // per_image)

    def blocks():
        for start in range(0, n, step):
            yield np.asarray(images[start:start + step], dtype=np.float64).reshape(-1, channels)

    count = n * per_image // channels
    mean = sum(block.sum(axis=0) for block in blocks()) / count
    variance = sum(np.square(block - mean).sum(axis=0) for block in blocks()) / count
    return mean, np.maximum(np.sqrt(variance), 1e-8)
