"""`jpixd send-test --to` (issue 15): a sample notice through the configured transport,
as a real command, its ids printed."""

from __future__ import annotations

import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

from aiobotocore.session import get_session

from tests.conftest import base_mapping, toml_dumps


def jpixd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jpixd", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_send_test_through_the_file_transport(tmp_path: Path) -> None:
    cfg = tmp_path / "jpixd.toml"
    cfg.write_text(toml_dumps(base_mapping(tmp_path)), encoding="utf-8")
    out = jpixd("send-test", "--to", "NOC@isp.example.jp", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sent to noc@isp.example.jp through file (iso-2022-jp)" in out.stdout
    message_id = out.stdout.split("Message-ID: ", 1)[1].split()[0]
    [eml] = (tmp_path / "outbox").glob("*.eml")
    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["Message-ID"] == message_id and msg["X-Jpixd-Test"] == "send-test"
    assert "【送信テスト】" in str(msg["Subject"])
    body = msg.get_body(("plain",))
    assert body is not None
    # Read as a sentence, whichever line the phone-width wrap put its end on.
    assert "実際の故障ではありません" in body.get_content().replace("\r\n", "")


def test_send_test_refuses_a_bad_address(tmp_path: Path) -> None:
    cfg = tmp_path / "jpixd.toml"
    cfg.write_text(toml_dumps(base_mapping(tmp_path)), encoding="utf-8")
    out = jpixd("send-test", "--to", "not an address", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2 and "--to:" in out.stderr
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())


async def test_send_test_through_ses_prints_its_message_id(tmp_path: Path,
                                                           moto_url: str) -> None:
    async with get_session().create_client("ses", region_name="ap-northeast-1",
                                           endpoint_url=moto_url) as ses:
        await ses.verify_email_identity(EmailAddress="notice@example.jp")
    cfg = tmp_path / "jpixd.toml"
    cfg.write_text(toml_dumps(base_mapping(tmp_path, mail={
        "from": "notice@example.jp", "transport": "ses",
        "ses": {"region": "ap-northeast-1", "endpoint_url": moto_url}})), encoding="utf-8")
    out = jpixd("send-test", "--to", "success@simulator.amazonses.com", "--config",
                str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "through ses" in out.stdout and "SES message id: " in out.stdout
    # An identity SES does not know: the refusal is said, exit 1.
    cfg.write_text(toml_dumps(base_mapping(tmp_path, mail={
        "from": "unverified@nowhere.example", "transport": "ses",
        "ses": {"region": "ap-northeast-1", "endpoint_url": moto_url}})), encoding="utf-8")
    out = jpixd("send-test", "--to", "success@simulator.amazonses.com", "--config",
                str(cfg), cwd=tmp_path)
    assert out.returncode == 1 and "send-test to success@simulator.amazonses.com" in out.stderr
