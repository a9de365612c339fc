"""The file transport: one .eml per delivery, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from jpixd.mail.render import Rendered
from jpixd.mail.transports import Failure, SendError

_UNSAFE = re.compile(r"[^A-Za-z0-9.@_-]")


class FileTransport:
    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made = False  # mkdir once, not per mail (again if the directory vanishes)

    async def send(self, mail: Rendered) -> str | None:
        # In the event loop: a few kilobytes into the page cache take microseconds, a
        # hop to a worker thread takes most of a millisecond on a small VM.
        self._write(mail)
        return None

    def _write(self, mail: Rendered) -> None:
        name = _UNSAFE.sub("_", mail.message_id.strip("<>")) + ".eml"
        final = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f".{name}.tmp")
        try:
            if not self._made:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._made = True
            try:
                self._put(tmp, final, mail.data)
            except FileNotFoundError:  # the directory was removed under us
                self.directory.mkdir(parents=True, exist_ok=True)
                self._put(tmp, final, mail.data)
        except OSError as exc:
            raise SendError(Failure.TRANSIENT, f"cannot write {self.directory}: "
                            f"{exc.strerror or exc}") from None

    @staticmethod
    def _put(tmp: str, final: str, data: bytes) -> None:
        # Atomic, not durable: the rename means no reader sees half a message; a crash
        # before the page cache is flushed loses a file of a delivery that the store
        # then still holds (the outbox directory is for development).
        # 0640: a mail holds a subscriber's name and address (the umask may narrow it).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; loop for the rule's sake
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, final)

    async def close(self) -> None:
        return None
