"""The handwritten digits bundled with scikit-learn, as small colour images.

1797 grey 8x8 images of the digits 0-9 (values 0-16), read from a file shipped inside
scikit-learn (no download). :func:`load_digits` scales them to ``[0, 1]``, resizes them
bilinearly to ``size x size`` and repeats the grey channel three times, so they fit
models made for RGB input: ``images (N, size, size, 3)`` float32, ``labels (N,)`` int64.

The train/test split is fixed: within each class a permutation seeded with
``SPLIT_SEED`` puts a fifth of the images (rounded) into the test split, giving 1438
training and 359 test images, about equally many of each digit in both.
scikit-learn is the optional extra ``refvit[examples]``.
"""
from __future__ import annotations

import numpy as np

from refvit.data.resize import resize_bilinear

SPLIT_SEED = 0
TEST_FRACTION = 0.2
NUM_CLASSES = 10


def _read_digits():
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise ImportError("load_digits: the digits data set comes with scikit-learn; install it with "
                          "`pip install scikit-learn` or `pip install 'refvit[examples]'`") from None
    bunch = sklearn_load_digits()
    return bunch.images, bunch.target


def split_indices(labels, test_fraction=TEST_FRACTION, seed=SPLIT_SEED):
    """``(train_indices, test_indices)``, stratified by class, each sorted ascending."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(split="train", size=32):
    """``(images (N, size, size, 3) float32 in [0, 1], labels (N,) int64)`` of the ``"train"`` or
    ``"test"`` split (or ``"all"``, in the original order)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"load_digits: 'split' must be 'train', 'test' or 'all'; got {split!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"load_digits: 'size' must be an integer >= 1; got {size!r}")
    grey, labels = _read_digits()
    labels = labels.astype(np.int64)
    if split != "all":
        train, test = split_indices(labels)
        chosen = train if split == "train" else test
        grey, labels = grey[chosen], labels[chosen]
    scaled = (grey / 16.0)[..., None]
    images = resize_bilinear(scaled, int(size)) if size != grey.shape[1] else scaled
    images = np.repeat(np.clip(images, 0.0, 1.0), 3, axis=-1).astype(np.float32)
    return np.ascontiguousarray(images), labels
