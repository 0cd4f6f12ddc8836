"""Errors a user can fix: the commands print their message on one line and exit with 2.

Every class here (and each module's own subclasses: ``ConfigError``, ``BadRowError``,
``ModelNotFoundError``, ...) derives from :class:`UserError`, so the command-line layer can
tell "fix your input" apart from a bug, whose traceback it keeps in the run's log.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input, a busy or finished run folder, a full disk: the message says what to do."""


class RunFolderError(UserError):
    """The run folder is in use, or holds another run that a new start would mix with."""


class ResumeError(UserError):
    """``resume=`` cannot continue this folder (no checkpoint, finished, or changed identity)."""


class DataFileError(UserError, ValueError):
    """A data file cannot be read at all (not the format its name says, empty, unreadable)."""


class DiskFullError(UserError, OSError):
    """A write failed for want of space; what was written before is intact."""


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also when wrapped in another library's error (safetensors)."""
    while err is not None:
        if isinstance(err, DiskFullError):
            return True
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err)
        if "No space left on device" in text or "Disk quota exceeded" in text or "StorageFull" in text:
            return True
        err = err.__cause__ or err.__context__
    return False
