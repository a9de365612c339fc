"""Whether an error says the machine ran out of something (disk, memory, descriptors)
rather than that our code or an input is wrong. Such an error is no bug and no bad
input: a restart cannot mend it and a quarantine cannot hold it (its own write fails
too), so it is waited out, never counted towards giving up."""

from __future__ import annotations

import errno
import sqlite3

_EXHAUSTED_ERRNOS = {errno.ENOSPC: "disk space", errno.EDQUOT: "disk quota",
                     errno.EROFS: "a writable filesystem",
                     errno.EMFILE: "file descriptors", errno.ENFILE: "file descriptors",
                     errno.ENOMEM: "memory"}
# SQLite says so in words only: SQLITE_FULL, and SQLITE_READONLY on a filesystem that was
# remounted read-only under a running process.
_SQLITE_EXHAUSTED = {"database or disk is full": "disk space",
                     "attempt to write a readonly database": "a writable filesystem"}
# PostgreSQL's class 53, "insufficient resources": its disk, memory or connections.
_PG_EXHAUSTED = {"53100": "database disk space", "53200": "database memory",
                 "53300": "database connections"}


def _itself(exc: BaseException) -> str | None:
    """What `exc` itself says, without what it wraps."""
    if isinstance(exc, OSError) and exc.errno in _EXHAUSTED_ERRNOS:
        return _EXHAUSTED_ERRNOS[exc.errno]
    if isinstance(exc, sqlite3.OperationalError):
        for words, resource in _SQLITE_EXHAUSTED.items():
            if words in str(exc):
                return resource
    state = getattr(exc, "sqlstate", None)  # asyncpg's errors carry it
    if isinstance(state, str) and state in _PG_EXHAUSTED:
        return _PG_EXHAUSTED[state]
    return "memory" if isinstance(exc, MemoryError) else None


def exhaustion(exc: BaseException, depth: int = 0) -> str | None:
    """Which resource the machine ran out of, if that is what `exc` says: also through
    the exceptions it was raised from and inside exception groups (a TaskGroup wraps
    what its tasks raised, and a crash barrier whose own write failed adds a context)."""
    if depth > 8:
        return None
    found = _itself(exc)
    inner: list[BaseException | None] = [exc.__cause__, exc.__context__]
    if isinstance(exc, BaseExceptionGroup):
        inner = [*exc.exceptions, *inner]
    for linked in inner:
        if found:
            return found
        if linked is not None and linked is not exc:
            found = exhaustion(linked, depth + 1)
    return found
