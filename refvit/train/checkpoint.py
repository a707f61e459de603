"""Checkpoints that survive a crash mid-write, as ``.npz`` files that need no pickle to read.

A checkpoint is a nested ``dict`` of NumPy arrays and plain values (numbers, strings,
lists, tuples, dicts, ``None``). Arrays go into the ``.npz`` archive as they are; the
structure around them is JSON text stored in the archive as the array ``__meta__``, with
each array replaced by ``{"__array__": name}``. Reading uses ``allow_pickle=False``.

Writing is atomic: the archive goes to a temporary file in the same folder, is flushed
and ``fsync``-ed, and only then renamed over the old checkpoint with ``os.replace`` (a
single step on POSIX and Windows). A write that fails or is interrupted leaves the
previous checkpoint as it was and removes the temporary file; one killed outright leaves
it, and :func:`remove_stale_temp_files` clears such leftovers.

Reading a damaged file (truncated, bit-flipped, not an archive, metadata or arrays
missing) and a write that fails for a reason the user can act on (disk full, read-only
file system, permission, missing folder) raise :class:`~refvit.errors.UserError` naming
the file.
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import zipfile
import zlib

import numpy as np

from refvit.errors import USER_ERRNOS, UserError, os_error_reason

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


def _decode(value, archive, path):
    if isinstance(value, list):
        return [_decode(item, archive, path) for item in value]
    if isinstance(value, dict):
        if "__array__" in value:
            name = value["__array__"]
            if not isinstance(name, str) or name not in archive:
                raise _damaged(path, f"the array {name!r} its metadata names is missing")
            return archive[name]
        if "__tuple__" in value:
            return tuple(_decode(item, archive, path) for item in value["__tuple__"])
        if "__items__" in value:
            try:
                return {_decode(key, archive, path): _decode(item, archive, path) for key, item in value["__items__"]}
            except UserError:
                raise
            except (TypeError, ValueError):  # not pairs, or an unhashable key
                raise _damaged(path, "its metadata has a malformed mapping") from None
        return {key: _decode(item, archive, path) for key, item in value.items()}
    return value


def _damaged(path, detail):
    return UserError(f"checkpoint {path} is damaged ({detail}); it cannot be read: use another copy or train again")


def _write_npz(handle, arrays):
    np.savez(handle, **arrays)


TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp: .NAME.XXXXXXXX.tmp


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then move it onto ``path``.

    The temporary file is ``.NAME.XXXXXXXX.tmp`` in the same folder; it is removed when the
    write fails. A full disk, a read-only file system, a missing folder or a denied
    permission raise :class:`~refvit.errors.UserError` naming ``path``; ``path`` keeps its
    old contents.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    temporary = None
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                                 suffix=TEMP_SUFFIX)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and error.errno in USER_ERRNOS:
            raise UserError(f"cannot write {path}: {_write_reason(error, folder)}; {os.path.basename(path)} was "
                            f"left as it was") from None
        raise
    _fsync_folder(folder)


def _write_reason(error, folder):
    """Why a write into ``folder`` failed, in words about the folder and the disk, not the temporary file."""
    reason = os_error_reason(error)
    if reason.startswith("cannot be written: "):  # disk full, read-only, quota
        return reason[len("cannot be written: "):]
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"the folder {folder} does not exist"
    return f"the folder {folder} {reason}"


def stale_temp_files(folder):
    """The temporary files that killed writes left in ``folder`` (``.NAME.XXXXXXXX.tmp``), sorted."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if _TEMP_NAME.match(name) and os.path.isfile(os.path.join(folder, name)))


def remove_stale_temp_files(folder):
    """Remove what :func:`stale_temp_files` finds in ``folder``; return the removed paths.

    Call it only while no other process writes into ``folder`` (while holding the output
    folder's lock): a write in progress has a temporary file of the same form.
    """
    removed = []
    for temporary in stale_temp_files(folder):
        try:
            os.remove(temporary)
        except FileNotFoundError:
            continue
        removed.append(temporary)
    return removed


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


ZIP_MAGIC = b"PK\x03\x04"


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`; arrays come back as NumPy arrays.

    A missing, empty, truncated or corrupted file (bad CRC, cut short), a file that is not
    an ``.npz`` archive, and one whose metadata or arrays are missing raise
    :class:`~refvit.errors.UserError` naming the file and what is wrong.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path} is a folder; expected a checkpoint file (checkpoint.npz)")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(ZIP_MAGIC))
    except OSError as error:
        raise UserError(f"checkpoint {path} cannot be read: {os_error_reason(error)}") from None
    if not magic:
        raise _damaged(path, "the file is empty")
    if magic != ZIP_MAGIC:
        raise UserError(f"{path} is not a readable checkpoint: it is not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if META_KEY not in archive.files:
                raise UserError(f"{path} is an .npz file but not a refvit checkpoint (it has no {META_KEY!r})")
            skeleton = json.loads(archive[META_KEY].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != META_KEY}
    except UserError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, UnicodeDecodeError) as error:
        raise _damaged(path, _read_problem(error)) from None
    if not isinstance(skeleton, dict):
        raise _damaged(path, f"its metadata is a {type(skeleton).__name__}, not a mapping")
    state = _decode(skeleton, arrays, path)
    if state.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} has format {state.get('format')!r}; this refvit reads {FORMAT!r}")
    return state


def _read_problem(error):
    """What went wrong reading an archive, in a few words: ``bad CRC-32 in 'array3'``, ``truncated``."""
    text = str(error)
    crc = re.search(r"Bad CRC-32 for file '([^']*?)(?:\.npy)?'", text)
    if crc:
        return f"bad CRC-32 in {crc.group(1)!r}"
    if isinstance(error, zipfile.BadZipFile) and "not a zip file" in text:
        return "truncated: the archive's directory at its end is missing"
    if isinstance(error, EOFError) or "truncat" in text.lower() or "cannot reshape" in text:
        return f"truncated: {text}" if text else "truncated"
    if isinstance(error, json.JSONDecodeError) or isinstance(error, UnicodeDecodeError):
        return "its metadata is not valid JSON text"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _missing(state, keys):
    """The first dotted key of ``keys`` that ``state`` lacks (``"run.model"``), or ``None``."""
    for dotted in keys:
        value = state
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return dotted
            value = value[part]
    return None


EVAL_KEYS = ("epoch", "run.model", "info.model_kwargs", "info.mean", "info.std", "info.dataset", "model")
RESUME_KEYS = ("epoch", "run", "model", "optimizer", "schedule", "random.nn", "random.train_loader", "history")


def load_training_checkpoint(path, resume=False):
    """:func:`load_checkpoint`, then check it holds what ``refvit train`` writes.

    ``resume=False`` checks what evaluating needs (:data:`EVAL_KEYS`), ``resume=True``
    what continuing the run needs (:data:`RESUME_KEYS`). A missing entry, or weights that
    are not a mapping of names to arrays, raise :class:`~refvit.errors.UserError` naming
    the file and the entry.
    """
    state = load_checkpoint(path)
    missing = _missing(state, RESUME_KEYS if resume else EVAL_KEYS)
    if missing is not None:
        raise UserError(f"checkpoint {os.fspath(path)} was not written by refvit train: it has no {missing!r}")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(key, str) and isinstance(value, np.ndarray)
                                                for key, value in weights.items()):
        raise UserError(f"checkpoint {os.fspath(path)} was not written by refvit train: its 'model' is not a "
                        f"mapping of parameter names to arrays")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise UserError(f"checkpoint {os.fspath(path)} was not written by refvit train: its 'epoch' is {epoch!r}")
    return state
