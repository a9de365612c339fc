"""The file transport: one .eml per delivery, whole or not at all, and a clear error when
the directory cannot be written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jpixd.mail.render import Rendered
from jpixd.mail.transports import Failure, SendError
from jpixd.mail.transports.file import FileTransport


def mail(n: int) -> Rendered:
    return Rendered(data=b"Subject: x\r\n\r\nbody %d\r\n" % n, sender="n@example.jp",
                    recipient="a@isp.example.jp", subject="x",
                    message_id=f"<jpixd.{n}.1@example.jp>", charset="utf-8")


async def test_one_file_per_mail_and_a_removed_directory_comes_back(tmp_path: Path) -> None:
    out = tmp_path / "outbox"
    t = FileTransport(out)
    await t.send(mail(1))
    shutil.rmtree(out)  # an operator cleans up while the daemon runs
    await t.send(mail(2))
    assert sorted(p.name for p in out.iterdir()) == ["jpixd.2.1@example.jp.eml"]
    assert (out / "jpixd.2.1@example.jp.eml").read_bytes().endswith(b"body 2\r\n")


async def test_an_unwritable_directory_is_a_transient_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(SendError) as err:
        await FileTransport(blocker / "outbox").send(mail(1))
    assert err.value.failure == Failure.TRANSIENT
    assert "cannot write" in err.value.reason
