"""The output folder of a run, held by a lock file while the run uses it.

``with hold_output_folder("runs/x"):`` makes sure ``runs/x`` is a folder this process can
write (creating it if needed) and holds it: the lock file ``runs/x/.refvit-lock`` is
created atomically (``os.open`` with ``O_CREAT | O_EXCL``, which only one process can win)
and holds the holder's pid, host and start time as JSON. It is removed when the block
ends, also on an exception or ``KeyboardInterrupt``.

* A second run into a held folder is refused with a one-line
  :class:`~refvit.errors.UserError` naming the holder's pid and host.
* A lock left by a process that was killed (same host, pid no longer running) is stale:
  it is taken over. A lock from another host cannot be checked and is refused; the
  message names the file to remove once that process is known to be gone.
* When the folder is taken, the temporary files of checkpoint writes that a killed
  process left behind (``.NAME.XXXXXXXX.tmp``) are removed.
* ``--out`` naming a file, a folder that cannot be created, or one that cannot be written
  (read-only file system, permission, full disk) are one-line ``UserError``s, raised
  before any training.

Holding is re-entrant within a process: ``refvit train`` holds the folder while it reads
the checkpoint and decides what to do, and :func:`~refvit.train.fit` holds it again
inside; the lock is removed when the outermost hold ends. A folder the hold created is
removed again if nothing was written into it (a command that stopped on a bad flag leaves
no trace).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from refvit.errors import UserError, os_error_reason
from refvit.train.checkpoint import remove_stale_temp_files

LOCK_NAME = ".refvit-lock"
FRESH_SECONDS = 10.0  # a lock file without readable contents younger than this may be being written

_held = {}  # real path of a folder -> how many holds this process has on it
_created = set()  # real paths of the folders this process created when it took them


def _process_running(pid):
    """Whether process ``pid`` exists on this host (``os.kill(pid, 0)``: no signal is sent)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill would end the process there: assume it runs (the message names the lock file)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _read_lock(path):
    """The holder ``{"pid", "host", "started"}`` of lock file ``path``, ``{}`` if unreadable, ``None`` if gone."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(holder, dict) or isinstance(holder.get("pid"), bool) or not isinstance(holder.get("pid"), int):
        return {}
    return holder


def _describe(holder):
    started = holder.get("started")
    since = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" \
        if isinstance(started, (int, float)) else ""
    return f"process {holder['pid']} on {holder.get('host', 'an unknown host')}{since}"


def _check_folder(folder, option):
    """Create ``folder`` if needed; return whether it was created here."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{option} {folder} is a file, not a folder; choose a folder for the run's files")
    if os.path.isdir(folder):
        return False
    try:
        os.makedirs(folder)
    except FileExistsError:
        return False
    except OSError as error:
        raise UserError(f"{option} {folder} cannot be created: {os_error_reason(error)}") from None
    return True


def _create_lock(lock, option, folder):
    """Create ``lock`` with this process's facts; ``False`` if it exists already."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        raise UserError(f"{option} {folder} cannot be written: {_reason(error)}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:  # also the folder's writability probe
            handle.write(json.dumps(holder) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(lock)
        raise UserError(f"{option} {folder} cannot be written: {_reason(error)}") from None
    return True


def _reason(error):
    reason = os_error_reason(error)
    return reason[len("cannot be written: "):] if reason.startswith("cannot be written: ") else reason


def _take_over(lock, holder):
    """Remove the stale ``lock`` of ``holder``; ``False`` if another process changed it meanwhile.

    The lock is first renamed to a name of this process's own, so of two processes that
    found the same stale lock only one moves it; the moved file is checked to still be the
    stale holder's (and put back if it is a fresh lock that replaced it in between).
    """
    aside = f"{lock}.stale.{os.getpid()}"
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return False
    moved = _read_lock(aside)
    if moved is not None and moved != holder and moved:
        with contextlib.suppress(OSError):
            os.link(aside, lock)  # a live lock taken by mistake: give it back unless replaced again
        with contextlib.suppress(OSError):
            os.remove(aside)
        return False
    with contextlib.suppress(OSError):
        os.remove(aside)
    return True


def acquire(folder, option="--out"):
    """Create ``folder`` if needed, check it can be written, lock it and clear stale temporary files."""
    folder = os.fspath(folder)
    created = _check_folder(folder, option)
    key = os.path.realpath(folder)
    if _held.get(key):
        _held[key] += 1
        return
    try:
        _lock(folder, option)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    _held[key] = 1
    if created:
        _created.add(key)
    remove_stale_temp_files(folder)


def _lock(folder, option):
    lock = os.path.join(folder, LOCK_NAME)
    for _ in range(20):
        if _create_lock(lock, option, folder):
            break
        holder = _read_lock(lock)
        if holder is None:  # removed since: try again
            continue
        if not holder:
            try:
                age = time.time() - os.path.getmtime(lock)
            except OSError:
                continue
            if age < FRESH_SECONDS:
                raise UserError(f"{option} {folder} is being taken by another process (its lock file {lock} is "
                                f"being written); wait for that run to finish, or choose another {option}")
            _take_over(lock, holder)  # a holder killed before it wrote its facts
            continue
        if holder["pid"] == os.getpid() and holder.get("host") == socket.gethostname():
            _take_over(lock, holder)  # left by an earlier hold of this process that could not clean up
            continue
        if holder.get("host") != socket.gethostname():
            raise UserError(f"{option} {folder} is in use by {_describe(holder)}; if that process has ended, "
                            f"remove its lock file {lock}, else wait for it or choose another {option}")
        if _process_running(holder["pid"]):
            raise UserError(f"{option} {folder} is in use by {_describe(holder)}; wait for that run to finish, "
                            f"or choose another {option}" + (f" (if it has ended, remove its lock file {lock})"
                                                             if os.name == "nt" else ""))
        _take_over(lock, holder)  # stale: its process is gone
    else:
        raise UserError(f"{option} {folder}: its lock file {lock} keeps changing; another run is starting there")


def release(folder):
    """End one hold of ``folder``; the outermost removes the lock file (if it is still this process's)."""
    key = os.path.realpath(os.fspath(folder))
    count = _held.get(key, 0)
    if count > 1:
        _held[key] = count - 1
        return
    _held.pop(key, None)
    lock = os.path.join(os.fspath(folder), LOCK_NAME)
    holder = _read_lock(lock)
    if holder and holder["pid"] == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(OSError):
            os.remove(lock)
    if key in _created:  # a command that failed before writing anything leaves no empty folder behind
        _created.discard(key)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def is_held(folder):
    """Whether this process holds ``folder``."""
    return bool(_held.get(os.path.realpath(os.fspath(folder))))


@contextlib.contextmanager
def hold_output_folder(folder, option="--out"):
    """Hold ``folder`` for the ``with`` block (see the module's description)."""
    acquire(folder, option)
    try:
        yield os.fspath(folder)
    finally:
        release(folder)


__all__ = ["LOCK_NAME", "acquire", "hold_output_folder", "is_held", "release"]
