"""The file transport: one .eml per delivery, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from jpixd.mail.render import Rendered
from jpixd.mail.transports import Failure, SendError


class FileTransport:
    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: Rendered) -> str | None:
        # In the event loop: a few kilobytes into the page cache take microseconds, a
        # hop to a worker thread takes most of a millisecond on a small VM.
        self._write(mail)
        return None

    def _write(self, mail: Rendered) -> None:
        name = re.sub(r"[^A-Za-z0-9.@_-]", "_", mail.message_id.strip("<>")) + ".eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            final = self.directory / name
            tmp = self.directory / f".{name}.tmp"
            # Atomic, not durable: the rename means no reader sees half a message; a
            # crash before the page cache is flushed loses a file of a delivery that
            # the store then still holds (the outbox directory is for development).
            with open(tmp, "wb") as f:
                f.write(mail.data)
            os.replace(tmp, final)
        except OSError as exc:
            raise SendError(Failure.TRANSIENT, f"cannot write {self.directory}: "
                            f"{exc.strerror or exc}") from None

    async def close(self) -> None:
        return None
