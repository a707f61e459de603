"""Your own pictures: a folder with one subfolder per class of ``.png``/``.jpg``/``.jpeg`` files.

The layout is torchvision's ``ImageFolder`` convention::

    DIR/cat/1.png  DIR/cat/2.jpg  DIR/dog/a.jpeg ...                      (split here, see below)
    DIR/train/cat/...  DIR/train/dog/...  DIR/val/cat/...  DIR/val/dog/...  (splits given)

* **Classes** are the sorted names of the class subfolders (of ``train/`` when the splits are
  given); a class's index is its position in that list (``class_names``). Files are found in the
  whole tree under a class folder (subfolders included) and read in sorted path order.
* **Splits.** With ``train/`` and ``val/`` (or ``test/``; ``val/`` wins when both exist)
  subfolders, those are the training and test splits; ``val/`` may lack a class or hold it
  empty, but may not hold a class ``train/`` does not. Without them, each class is split on its
  own: its files in sorted order are permuted by ``numpy.random.default_rng([SPLIT_SEED, index])``
  and the first ``max(1, n // 5)`` go to the test split (none when the class has a single image),
  so about 80/20 per class, the same on every run and unchanged for a class when others are
  added.
* **Files.** Only names ending in ``.png``, ``.jpg`` or ``.jpeg`` (any case) are read; other files
  (and files directly in ``DIR`` or a split folder, outside class folders) are ignored. A class
  folder of the training split without images, or a folder without any, is a
  :class:`~refvit.errors.UserError`. A file Pillow cannot read (damaged, truncated, not an image)
  is a one-line :class:`~refvit.errors.UserError` naming it, or, with ``skip_bad=True``, left out
  with a :class:`UserWarning` naming it.
* **Channels.** When every image (after bad files are left out) is grey (Pillow modes ``1``,
  ``L``, ``LA``, ``I``, ``I;16``, ``F``: converted to ``L``; alpha dropped), images have 1 channel;
  otherwise every image is converted to RGB with Pillow's ``convert("RGB")``: grey is repeated,
  a palette is looked up, an alpha channel is dropped (not blended onto a background). ``C`` is 1
  or 3 accordingly, and the model is built with that ``in_chans``.
* **Size.** Each image is stretched (aspect ratio not kept, nothing cropped) to ``size x size``
  (or ``(height, width)``) with Pillow's ``BILINEAR`` filter, which averages over the whole source
  footprint when shrinking (anti-aliased), then scaled to ``[0, 1]`` float32.
* **Memory.** Images are decoded and resized one at a time into an array allocated once per
  split, ``(N, height, width, C)`` float32: at any moment the memory held is that resized set (what
  the loaders read) plus one decoded image. When the resized set of both splits is larger than the
  memory budget (``max_bytes``, else ``$REFVIT_IMAGE_MEMORY_BYTES``, else a quarter of the
  machine's physical memory), the arrays are instead memory-mapped ``.npy`` files in a cache
  folder (``~/.cache/refvit/image-folders/<key>/`` by default), written once and reused by later
  loads of the unchanged folder; the returned images are then read-only ``numpy.memmap`` arrays
  from which a loader reads only its batches. Budget, cache folder, key and atomic writing: see
  :mod:`refvit.data.image_cache`.

Pillow is an optional extra: ``pip install 'refvit[images]'``.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from refvit.data import image_cache
from refvit.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SPLIT_SEED = 0
TEST_SPLIT_NAMES = ("val", "test")


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise UserError("load_image_folder: reading .png/.jpg images needs Pillow, an optional extra: "
                        "pip install 'refvit[images]'") from None
    return Image


def is_image_file(name):
    """Whether a file name ends in ``.png``, ``.jpg`` or ``.jpeg`` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _subfolders(path):
    return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))


def _image_files(folder):
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, name) for name in files if is_image_file(name))
    return sorted(found)


def split_folders(path):
    """``(train_dir, test_dir)`` when ``path`` holds ``train/`` and ``val/`` (or ``test/``), else ``None``."""
    train_dir = os.path.join(path, "train")
    if not os.path.isdir(train_dir):
        return None
    for name in TEST_SPLIT_NAMES:
        if os.path.isdir(os.path.join(path, name)):
            return train_dir, os.path.join(path, name)
    return None


def looks_like_image_folder(path):
    """Whether the folder ``path`` has class subfolders (or ``train/`` with them) holding at least one
    ``.png``/``.jpg``/``.jpeg`` file: what :func:`refvit.data.load_dataset` reads as an image folder."""
    path = os.fspath(path)
    splits = split_folders(path)
    root = splits[0] if splits else path
    return any(_image_files(os.path.join(root, name)) for name in _subfolders(root))


def list_image_folder(path):
    """``(class_names, train_files, test_files)``; the file lists are ``[(path, label), ...]``,
    split as the module docstring says. Nothing is opened."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise UserError(f"load_image_folder: 'path' must be an existing folder; {path} "
                        f"{'is a file' if os.path.exists(path) else 'does not exist'}")
    splits = split_folders(path)
    root = splits[0] if splits else path
    class_names = _subfolders(root)
    if not class_names:
        raise UserError(f"load_image_folder: 'path' must hold one subfolder per class of .png/.jpg/.jpeg "
                        f"images; {root} has no subfolders")
    per_class = [_image_files(os.path.join(root, name)) for name in class_names]
    if not any(per_class):
        raise UserError(f"load_image_folder: 'path' must hold .png/.jpg/.jpeg images in its class subfolders; "
                        f"{root} has none (in {len(class_names)} subfolders)")
    empty = [name for name, files in zip(class_names, per_class) if not files]
    if empty:
        raise UserError(f"load_image_folder: every class folder must hold .png/.jpg/.jpeg images; "
                        f"{', '.join(os.path.join(root, name) for name in empty)} "
                        f"{'has' if len(empty) == 1 else 'have'} none (remove the folder or add images)")
    if splits:
        train = [(file, label) for label, files in enumerate(per_class) for file in files]
        test_dir = splits[1]
        extra = [name for name in _subfolders(test_dir) if name not in class_names]
        if extra:
            raise UserError(f"load_image_folder: the classes of {test_dir} must be among those of {root}; "
                            f"{', '.join(map(repr, extra))} {'is' if len(extra) == 1 else 'are'} not")
        test = [(file, label) for label, name in enumerate(class_names)
                for file in (_image_files(os.path.join(test_dir, name))
                             if os.path.isdir(os.path.join(test_dir, name)) else [])]
        return class_names, train, test
    train, test = [], []
    for label, files in enumerate(per_class):
        order = np.random.default_rng([SPLIT_SEED, label]).permutation(len(files))
        n_test = max(1, len(files) // 5) if len(files) > 1 else 0
        chosen = set(order[:n_test].tolist())
        for index, file in enumerate(files):
            (test if index in chosen else train).append((file, label))
    return class_names, train, test


def _bad(file, error, skip_bad):
    reason = " ".join(str(error).split()) or type(error).__name__
    if skip_bad:
        warnings.warn(f"load_image_folder: skipping {file}: Pillow cannot read it ({reason})", stacklevel=3)
        return
    raise UserError(f"load_image_folder: {file} cannot be read as an image ({reason}); remove it, or skip "
                    f"unreadable files") from None


def _mode(Image, file):
    """The Pillow mode of ``file`` from its header (nothing decoded)."""
    with Image.open(file) as image:
        return image.mode


def _decode(Image, file, grey, height, width):
    """``(height, width, C)`` float32 in ``[0, 1]``: one image decoded, converted and resized."""
    with Image.open(file) as image:
        image.load()
        image = image.convert("L" if grey else "RGB")
        image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    if grey:
        pixels = pixels[..., None]
    return pixels / np.float32(255.0)


def _read_errors():
    # Pillow reports an unreadable file with OSError (UnidentifiedImageError, truncated data),
    # ValueError, SyntaxError (broken chunks) or its decompression-bomb error.
    Image = _pillow()
    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _fill(Image, errors, grey, skip_bad, images, labels, files):
    """Decode ``files`` (``[(file, label, mode), ...]``) one at a time into ``images``/``labels``;
    ``(count, [[file, reason], ...] left out)``."""
    height, width = images.shape[1:3]
    count, skipped = 0, []
    for file, label, _ in files:
        try:
            images[count] = _decode(Image, file, grey, height, width)
        except errors as error:
            _bad(file, error, skip_bad)
            skipped.append([file, " ".join(str(error).split()) or type(error).__name__])
            continue
        labels[count] = label
        count += 1
    return count, skipped


def _memory_mapped(path, size, skip_bad, class_names, listed, kept, shape, fill, cache_dir):
    """The four split arrays from the cache entry of this folder, decoding it first when there is none."""
    root = image_cache.cache_root(cache_dir)
    key = image_cache.cache_key(path, *size, skip_bad, class_names, listed)
    entry = os.path.join(root, key)
    if os.path.isfile(os.path.join(entry, "meta.json")):
        meta, arrays = image_cache.open_entry(entry)
        for file, reason in meta["skipped"]:  # left out when the entry was written: said again
            _bad(file, reason, skip_bad)
        return arrays
    meta = {"folder": os.path.realpath(path), "classes": list(class_names)}
    entry = image_cache.write_entry(root, key, kept, shape, fill, meta)
    return image_cache.open_entry(entry)[1]


def load_image_folder(path, size=32, skip_bad=False, max_bytes=None, cache_dir=None):
    """``(class_names, train_images, train_labels, test_images, test_labels)`` from an image folder.

    Images are ``(N, H, W, C)`` float32 in ``[0, 1]`` with ``(H, W) = (size, size)`` (or ``size`` as
    ``(height, width)``) and ``C`` 1 (all grey) or 3; labels ``(N,)`` int64 class indices into
    ``class_names``. Layout, split, channel rule and resizing filter: see the module docstring.
    ``max_bytes`` (default :func:`refvit.data.image_cache.memory_budget`) is the memory budget:
    a resized set of both splits larger than it is memory-mapped from ``.npy`` files under
    ``cache_dir`` (default :func:`refvit.data.image_cache.cache_root`) instead of held in memory.
    """
    Image = _pillow()
    errors = _read_errors()
    height, width = (size, size) if np.isscalar(size) else size
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise UserError(f"load_image_folder: 'size' must be >= 1; got {size}")
    max_bytes = image_cache.memory_budget() if max_bytes is None else max_bytes
    class_names, train, test = list_image_folder(path)

    # Pass 1: headers only, to find unreadable files and the channel count before allocating.
    kept = []
    for files in (train, test):
        readable = []
        for file, label in files:
            try:
                readable.append((file, label, _mode(Image, file)))
            except errors as error:
                _bad(file, error, skip_bad)
        kept.append(readable)
    grey = all(mode in GREY_MODES for files in kept for _, _, mode in files)
    channels = 1 if grey else 3
    total = sum(len(files) for files in kept)

    def fill(images, labels, files):
        return _fill(Image, errors, grey, skip_bad, images, labels, files)

    # Pass 2: decode and resize one image at a time, into memory or into memory-mapped files.
    if total * height * width * channels * 4 > max_bytes:
        out = _memory_mapped(path, (height, width), skip_bad, class_names, (train, test), kept,
                             (height, width, channels), fill, cache_dir)
    else:
        out = []
        for files in kept:
            images = np.empty((len(files), height, width, channels), dtype=np.float32)
            labels = np.empty(len(files), dtype=np.int64)
            count, _ = fill(images, labels, files)
            out += [images[:count], labels[:count]]
    if not len(out[1]):
        raise UserError(f"load_image_folder: the training split of {os.fspath(path)} has no readable images")
    return (class_names, *out)
