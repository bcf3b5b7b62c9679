"""Failures of the machine rather than of a study: a full disk, no memory, a read-only or failing disk,
a worker that died. One owner for telling them apart from a scheme's own failure.

Why: a scheme that fails on an image is a result (recorded, reported, skipped on resume). A full disk is
not: recording it as the scheme's failure loses the transmission for good (a resume skips it) and hides
the cause. So an environment failure stops the study with one line naming the cause, nothing is recorded
for the transmission in flight, and a failure recorded with ENVIRONMENT_PREFIX (a Ray worker that died)
is retried by the next run.
"""

from __future__ import annotations

import errno
import sqlite3

from lsc.errors import LscError

ENVIRONMENT_PREFIX = "environment: "  # the error text of a recorded failure the next run retries
_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only", errno.EIO: "a disk input/output error"}
_SQLITE = (("database or disk is full", "the disk is full"), ("disk i/o error", "a disk input/output error"),
           ("attempt to write a readonly database", "the run folder became read-only"))


class EnvironmentFailure(LscError):
    """The machine failed (disk, memory): the study stops here and resumes once the cause is gone."""


def environment_cause(exc: BaseException | None) -> str | None:
    """What in the machine caused `exc` (or an exception it was raised from), or None for a study's own failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, EnvironmentFailure):
            return str(exc)
        if isinstance(exc, MemoryError):
            return "out of memory"
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return f"{_ERRNOS[exc.errno]} ({exc.strerror})"
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            for fragment, cause in _SQLITE:
                if fragment in text:
                    return f"{cause} (SQLite: {exc})"
        exc = exc.__cause__ or exc.__context__
    return None


def raise_if_environment(exc: BaseException) -> None:
    """Re-raise an environment failure as EnvironmentFailure (the caller records anything else)."""
    cause = environment_cause(exc)
    if cause is not None:
        raise EnvironmentFailure(cause) from exc


def stopped_line(cause: str, out_dir: object) -> str:
    """The one line `lsc run` prints when the machine stopped it."""
    return (f"the study stopped: {cause}; everything stored before it is kept and the transmission in flight is "
            f"not recorded; fix the cause and run the same command to resume into {out_dir}")
