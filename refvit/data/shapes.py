"""Procedurally drawn shapes: a data set that needs no file and no download.

Each image shows one shape on a plain background; the shape is the class. Position, size,
shape colour, background colour and pixel noise are random, so a model has to learn the
outline, not a colour or a place. The classes are :data:`SHAPE_CLASSES`, equally many
of each (in a random order). Everything is drawn from ``np.random.default_rng(seed)``:
the same ``(n, size, seed)`` gives the same images.
"""
from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring", "diamond")


def shape_mask(shape, dx, dy, radius):
    """Boolean mask of ``shape`` with its centre at offset ``(0, 0)``; ``dx, dy`` are pixel offsets
    from the centre (``dy`` grows downwards) and ``radius`` is half the shape's extent."""
    distance = np.hypot(dx, dy)
    if shape == "circle":
        return distance <= radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * radius
    if shape == "triangle":  # apex up, base at the bottom
        return (dy >= -radius) & (dy <= 0.7 * radius) & (np.abs(dx) <= 0.6 * (dy + radius))
    if shape == "cross":
        arm = radius / 3.5
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    if shape == "ring":
        return (distance <= radius) & (distance >= 0.55 * radius)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    raise ValueError(f"shape_mask: 'shape' must be one of {', '.join(SHAPE_CLASSES)}; got {shape!r}")


def make_shapes(n, size=32, seed=0):
    """``(images (n, size, size, 3) float32 in [0, 1], labels (n,) int64)`` of drawn shapes."""
    for name, value, minimum in (("n", n, 1), ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"make_shapes: '{name}' must be an integer >= {minimum}; got {value!r}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    coordinates = np.arange(size) + 0.5
    images = np.empty((n, size, size, 3), dtype=np.float32)
    for index, label in enumerate(labels):
        radius = rng.uniform(0.18, 0.38) * size
        centre_x, centre_y = rng.uniform(radius, size - radius, size=2)
        dx = coordinates[None, :] - centre_x
        dy = coordinates[:, None] - centre_y
        mask = shape_mask(SHAPE_CLASSES[label], dx, dy, radius)
        background = rng.uniform(0.0, 0.35, size=3)
        foreground = rng.uniform(0.55, 1.0, size=3)
        image = np.where(mask[..., None], foreground, background)
        image += rng.normal(0.0, 0.03, size=image.shape)
        images[index] = np.clip(image, 0.0, 1.0)
    return images, labels
