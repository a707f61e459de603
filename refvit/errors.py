"""The exceptions for mistakes a user can fix: a bad flag, file, folder or setting.

``UserError`` is a ``ValueError`` and ``UserTypeError`` a ``TypeError``, so code that
checks arguments (the ops' contract: ``ValueError`` for values, ``TypeError`` for types)
may raise them and callers that catch the built-in types still work.

The ``refvit`` command treats these, and only these (plus the operating system's errors
about a named file, see :func:`user_message`), as the user's to fix: it prints one line
``refvit COMMAND: error: MESSAGE`` and exits with status 2. Anything else is a bug in
refvit: its traceback is shown with a line saying how to report it, and the status is 1.

A message names what the user typed (a flag such as ``--checkpoint``, a file, a folder,
an environment variable), what was expected and what was found, in one line.
"""
from __future__ import annotations

import errno
import os


class UserError(ValueError):
    """A mistake the user can fix (a bad flag value, a damaged file, a wrong folder)."""


class UserTypeError(UserError, TypeError):
    """A :class:`UserError` about a value of the wrong type (also a ``TypeError``)."""


# What the operating system's error numbers mean for someone who named the file.
_OS_REASONS = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "is not a folder (or a part of its path is a file)",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.EACCES: "cannot be accessed (permission denied)",
    errno.EPERM: "cannot be changed (operation not permitted)",
    errno.ENOSPC: "cannot be written: the disk is full",
    errno.EROFS: "cannot be written: the file system is read-only",
    errno.EDQUOT: "cannot be written: the disk quota is exceeded",
    errno.ENAMETOOLONG: "has a name that is too long",
}


USER_ERRNOS = frozenset(_OS_REASONS)  # the operating system's errors a user can act on


def os_error_reason(error):
    """The reason of an ``OSError`` in a few words: ``"the disk is full"``, ``"does not exist"``, ..."""
    reason = _OS_REASONS.get(getattr(error, "errno", None))
    if reason is None:
        reason = error.strerror or str(error) or type(error).__name__
    return reason


def user_message(error):
    """The one-line message for a user error, or ``None`` when ``error`` is a bug.

    * :class:`UserError` (and :class:`UserTypeError`): its message.
    * ``OSError`` about a named file whose error number the user can act on (missing,
      exists, a file where a folder is expected, permission, disk full, read-only file
      system): ``"PATH does not exist"`` and the like.

    Everything else returns ``None``.
    """
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError) and error.errno in _OS_REASONS and error.filename is not None:
        return f"{os.fsdecode(error.filename)} {_OS_REASONS[error.errno]}"
    return None
