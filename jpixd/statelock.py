"""One daemon per state: an exclusive lock on `state_dir/jpixd.lock`, held for the life of
the process. A second `jpixd run` on the same state would otherwise run every loop
beside the first, and its start-up recovery would re-queue the first one's mail in
flight, so both would send it (security probe M1).

flock(2) is released by the kernel when the process dies, however it dies: no stale lock
after a kill -9. The file says who holds it, for the second daemon's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from jpixd.model import utcnow

LOCK_NAME = "jpixd.lock"


class StateBusy(Exception):
    """The state cannot be ours: another daemon holds it, or it cannot be locked."""


@contextlib.contextmanager
def hold(state_dir: Path, now: datetime | None = None) -> Iterator[Path]:
    path = state_dir / LOCK_NAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateBusy(f"state_dir: cannot create {str(path)!r}: "
                        f"{exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            raise StateBusy(f"state_dir {str(state_dir)!r} is in use by another jpixd "
                            f"({holder}); stop it first, or give this one its own "
                            "state_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f"pid {os.getpid()} on {socket.gethostname()} since "
                       f"{(now or utcnow()).isoformat()}\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
