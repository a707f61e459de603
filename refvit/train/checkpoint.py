"""Checkpoints that survive a crash mid-write, as ``.npz`` files that need no pickle to read.

A checkpoint is a nested ``dict`` of NumPy arrays and plain values (numbers, strings,
lists, tuples, dicts, ``None``). Arrays go into the ``.npz`` archive as they are; the
structure around them is JSON text stored in the archive as the array ``__meta__``, with
each array replaced by ``{"__array__": name}``. Reading uses ``allow_pickle=False``.

Writing is atomic: the archive goes to a temporary file in the same folder, is flushed
and ``fsync``-ed, and only then renamed over the old checkpoint with ``os.replace`` (a
single step on POSIX and Windows). A write that fails or is interrupted leaves the
previous checkpoint as it was and removes the temporary file.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

FORMAT = "refvit-checkpoint-1"
META_KEY = "__meta__"


def _encode(value, arrays):
    """JSON-able skeleton of ``value``; arrays are moved into ``arrays``."""
    if isinstance(value, np.ndarray):
        name = f"array{len(arrays)}"
        arrays[name] = value
        return {"__array__": name}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and "__array__" not in value:
            return {key: _encode(item, arrays) for key, item in value.items()}
        return {"__items__": [[_encode(key, arrays), _encode(item, arrays)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, arrays) for item in value]}
    if isinstance(value, list):
        return [_encode(item, arrays) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save_checkpoint: 'state' may hold arrays, numbers, strings, lists, tuples and dicts; "
                    f"got {type(value).__name__}")


def _decode(value, archive):
    if isinstance(value, list):
        return [_decode(item, archive) for item in value]
    if isinstance(value, dict):
        if "__array__" in value:
            return archive[value["__array__"]]
        if "__tuple__" in value:
            return tuple(_decode(item, archive) for item in value["__tuple__"])
        if "__items__" in value:
            return {_decode(key, archive): _decode(item, archive) for key, item in value["__items__"]}
        return {key: _decode(item, archive) for key, item in value.items()}
    return value


def _write_npz(handle, arrays):
    np.savez(handle, **arrays)


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then move it onto ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_folder(folder)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some systems (Windows); the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write_text(path, text):
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def save_checkpoint(path, state):
    """Write ``state`` (a dict) to ``path`` atomically."""
    if not isinstance(state, dict):
        raise TypeError(f"save_checkpoint: 'state' must be a dict; got {type(state).__name__}")
    arrays = {}
    skeleton = _encode({"format": FORMAT, **state}, arrays)
    arrays[META_KEY] = np.frombuffer(json.dumps(skeleton).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda handle: _write_npz(handle, arrays))


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`; arrays come back as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: 'path' must be a checkpoint file; {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if META_KEY not in archive.files:
                raise ValueError(f"load_checkpoint: {path} is an .npz file but not a refvit checkpoint")
            skeleton = json.loads(archive[META_KEY].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != META_KEY}
    except (OSError, EOFError, json.JSONDecodeError) as error:
        raise ValueError(f"load_checkpoint: {path} is not a readable checkpoint ({error})") from None
    except ValueError as error:
        if str(error).startswith("load_checkpoint"):
            raise
        raise ValueError(f"load_checkpoint: {path} is not a readable checkpoint ({error})") from None
    state = _decode(skeleton, arrays)
    if state.get("format") != FORMAT:
        raise ValueError(f"load_checkpoint: {path} has format {state.get('format')!r}; expected {FORMAT!r}")
    return state
