"""The on-disk form of an image folder too large for memory: memory-mapped ``.npy`` files.

When the resized set of an image folder is larger than the memory budget
(:func:`memory_budget`), :func:`refvit.data.image_folder.load_image_folder` decodes the images
one at a time into ``.npy`` files opened with ``numpy.lib.format.open_memmap`` instead of into
memory, and returns them opened read-only with ``mmap_mode="r"``: a loader's batch reads only
its own images from the file, and the operating system keeps as much of it in memory as fits.

* **Budget.** ``max_bytes`` when given; else the environment variable
  ``REFVIT_IMAGE_MEMORY_BYTES`` (an integer count of bytes) when set; else a quarter
  (``MEMORY_FRACTION``) of the machine's physical memory (``os.sysconf``), or
  ``FALLBACK_MEMORY_BYTES`` (4 GiB) where that is unknown.
* **Where.** ``cache_dir`` when given; else ``$REFVIT_CACHE_DIR/image-folders``; else
  ``$XDG_CACHE_HOME/refvit/image-folders``; else ``~/.cache/refvit/image-folders``. Each folder
  read gets one entry, ``<cache>/<key>/``, holding ``train_images.npy``, ``train_labels.npy``,
  ``test_images.npy``, ``test_labels.npy`` and ``meta.json``. The key is a SHA-256 of the folder's
  real path, the image size, ``skip_bad``, the class names and every listed file's path, label,
  byte size and modification time: a second load of an unchanged folder reuses the entry
  without decoding, and a file added, removed, replaced or touched gives a new key.
* **Atomic.** An entry is written under a temporary name (``<key>.tmp-<pid>-<random>``) and
  renamed to ``<key>`` only once every image is written and flushed; an error or interrupt
  removes the temporary folder, and a killed process leaves one that is never read (its name is
  not a key). Deleting the cache folder (``rm -r ~/.cache/refvit/image-folders``) is always safe.
* **Disk.** Before decoding, the cache folder's free space must hold the resized set, else a
  one-line :class:`~refvit.errors.UserError` gives both figures and the way out.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid

import numpy as np
from numpy.lib.format import open_memmap

from refvit.errors import UserError

MEMORY_FRACTION = 0.25
FALLBACK_MEMORY_BYTES = 4 * 2**30
MEMORY_ENV = "REFVIT_IMAGE_MEMORY_BYTES"
CACHE_ENV = "REFVIT_CACHE_DIR"
CACHE_FORMAT = 1
SPLITS = ("train", "test")


def memory_budget():
    """Bytes a resized image folder may take in memory before it is memory-mapped (see the module docstring)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise UserError(f"load_image_folder: {MEMORY_ENV} must be a whole number of bytes >= 0; got {text!r}")
        return value
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_BYTES
    return int(physical * MEMORY_FRACTION) if physical > 0 else FALLBACK_MEMORY_BYTES


def cache_root(cache_dir=None):
    """The folder that holds the memory-mapped image folders (see the module docstring)."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    if os.environ.get(CACHE_ENV):
        return os.path.join(os.environ[CACHE_ENV], "image-folders")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "refvit", "image-folders")


def cache_key(path, height, width, skip_bad, class_names, splits):
    """Hex SHA-256 (24 digits) of what decides the decoded arrays; ``splits`` are ``[(file, label), ...]`` lists."""
    root = os.path.realpath(path)
    files = []
    for split, entries in zip(SPLITS, splits):
        for file, label in entries:
            stat = os.stat(file)
            files.append([split, os.path.relpath(os.path.realpath(file), root), int(label), stat.st_size,
                          stat.st_mtime_ns])
    text = json.dumps({"format": CACHE_FORMAT, "folder": root, "size": [height, width], "skip_bad": bool(skip_bad),
                       "classes": list(class_names), "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def open_entry(entry):
    """``(meta, [train_images, train_labels, test_images, test_labels])`` of a finished entry; images are
    read-only memory maps, labels arrays in memory."""
    with open(os.path.join(entry, "meta.json")) as handle:
        meta = json.load(handle)
    arrays = []
    for split in SPLITS:
        count = meta["counts"][split]
        arrays.append(np.load(os.path.join(entry, f"{split}_images.npy"), mmap_mode="r")[:count])
        arrays.append(np.load(os.path.join(entry, f"{split}_labels.npy"))[:count])
    return meta, arrays


def _check_disk(root, needed, shape_text):
    free = shutil.disk_usage(root).free
    if free < needed:
        raise UserError(f"load_image_folder: {shape_text} take {needed / 2**30:.2f} GiB as float32, more than the "
                        f"memory budget, and {root} has only {free / 2**30:.2f} GiB free to memory-map them; set "
                        f"{CACHE_ENV} to a folder with room, or use a smaller image size or fewer images")


def write_entry(root, key, kept, shape, fill, meta):
    """Decode into ``<root>/<key>/`` through a temporary folder renamed when complete; returns the entry path.

    ``kept``: per split, the ``[(file, label, mode), ...]`` to decode; ``shape``: ``(H, W, C)``;
    ``fill(images, labels, files) -> (count, skipped)`` decodes ``files`` into the two arrays.
    """
    os.makedirs(root, exist_ok=True)
    entry = os.path.join(root, key)
    total = sum(len(files) for files in kept)
    shape_text = f"{total} images of {'x'.join(map(str, shape))}"
    _check_disk(root, total * int(np.prod(shape)) * 4, shape_text)
    temporary = os.path.join(root, f"{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(temporary)
    try:
        counts, skipped = {}, []
        for split, files in zip(SPLITS, kept):
            images = open_memmap(os.path.join(temporary, f"{split}_images.npy"), mode="w+", dtype=np.float32,
                                 shape=(len(files), *shape))
            labels = np.zeros(len(files), dtype=np.int64)
            counts[split], split_skipped = fill(images, labels, files)
            images.flush()
            del images
            np.save(os.path.join(temporary, f"{split}_labels.npy"), labels)
            skipped += split_skipped
        with open(os.path.join(temporary, "meta.json"), "w") as handle:
            json.dump({**meta, "counts": counts, "skipped": skipped}, handle)
        try:
            os.rename(temporary, entry)
        except OSError:
            if not os.path.isfile(os.path.join(entry, "meta.json")):
                raise
            # another process finished the same entry first: use that one
    finally:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
    return entry
