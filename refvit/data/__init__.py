"""Small image data sets, batching and augmentation for training without PyTorch.

* :func:`load_digits`: scikit-learn's 8x8 digits resized to 32x32 RGB, fixed stratified split.
* :func:`make_shapes`: procedurally drawn shapes (no file needed).
* :func:`load_npz_folder`: your own images from ``.npz`` files.
* :func:`load_image_folder`: your own ``.png``/``.jpg`` files, one subfolder per class (needs Pillow).
* :class:`DataLoader`: seeded shuffling and augmentation with saveable state.
* :class:`RandomCrop`, :class:`RandomHorizontalFlip`, :class:`Normalize`, :class:`Compose`.
* :func:`load_dataset`, :func:`make_loaders`: the above by name, as the command line uses them.

Images are channels-last ``(N, H, W, C)`` float32, labels ``(N,)`` int64. See ``docs/training.md``.
"""
from refvit.data.augment import Compose, Normalize, RandomCrop, RandomHorizontalFlip, channel_mean_std
from refvit.data.datasets import Dataset, load_dataset, make_loaders
from refvit.data.digits import load_digits
from refvit.data.image_folder import load_image_folder
from refvit.data.loader import DataLoader
from refvit.data.npz_folder import load_npz_folder
from refvit.data.resize import resize_bilinear
from refvit.data.shapes import SHAPE_CLASSES, make_shapes

__all__ = [
    "Compose", "DataLoader", "Dataset", "Normalize", "RandomCrop", "RandomHorizontalFlip", "SHAPE_CLASSES",
    "channel_mean_std", "load_dataset", "load_digits", "load_image_folder", "load_npz_folder", "make_loaders",
    "make_shapes", "resize_bilinear",
]
