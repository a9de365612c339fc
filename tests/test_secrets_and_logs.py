"""Secrets from SSM (moto's server mode) and logs: JSON lines, stdlib routed, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from aiobotocore.session import get_session

from jpixd import logs
from jpixd.app import admin_token
from jpixd.backlog.client import BacklogClient
from jpixd.config import ConfigError, load_mapping
from jpixd.logs import REDACTOR
from jpixd.metrics import Metrics
from jpixd.secrets import resolve_ssm
from tests.conftest import base_mapping, make_config


async def put_parameter(moto_url: str, name: str, value: str) -> None:
    async with get_session().create_client("ssm", region_name="ap-northeast-1",
                                           endpoint_url=moto_url) as ssm:
        await ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


async def test_ssm_secrets_are_resolved_at_start(tmp_path: Path, moto_url: str) -> None:
    await put_parameter(moto_url, "/jpixd/test/backlog", "key-from-ssm")
    data = base_mapping(
        tmp_path,
        ssm={"region": "ap-northeast-1", "endpoint_url": moto_url},
        backlog={"base_url": "https://space.backlog.jp", "project_key": "NOC",
                 "issue_type": "Bug", "api_key": "ssm:/jpixd/test/backlog"},
    )
    cfg = load_mapping(data, base_dir=tmp_path, env={})
    resolved = await resolve_ssm(cfg)
    assert resolved.backlog is not None
    assert resolved.backlog.api_key.get() == "key-from-ssm"
    assert resolved.backlog.api_key.origin == "ssm:/jpixd/test/backlog"


async def test_a_missing_ssm_parameter_names_the_key(tmp_path: Path, moto_url: str) -> None:
    data = base_mapping(
        tmp_path,
        ssm={"endpoint_url": moto_url},
        http={"listen": "127.0.0.1:0", "admin_token": "ssm:/jpixd/test/nope"},
    )
    cfg = load_mapping(data, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError) as info:
        await resolve_ssm(cfg)
    assert info.value.errors == [
        "http.admin_token: SSM parameter '/jpixd/test/nope': ParameterNotFound"]


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    yield out
    root.handlers[:], root.level = saved
    structlog.reset_defaults()


def test_logs_are_json_lines_with_ids_and_no_secrets(captured_logs: io.StringIO) -> None:
    logs.REDACTOR.add(["s3cr3t-backlog-key"])
    log = structlog.get_logger("jpixd.test")
    with structlog.contextvars.bound_contextvars(delivery_id=42):
        log.info("mail sent", ses_message_id="0101-abc", api_key="s3cr3t-backlog-key")
    logging.getLogger("aiohttp.client").warning(
        "GET https://space.backlog.jp/api/v2/issues?apiKey=s3cr3t-backlog-key&count=1 failed")
    log.info("echo", detail="token was s3cr3t-backlog-key", header="Bearer abc.def.ghi")

    lines = [json.loads(x) for x in captured_logs.getvalue().splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert {"event", "level", "timestamp"} <= set(line)
    assert lines[0]["event"] == "mail sent" and lines[0]["delivery_id"] == 42
    assert lines[0]["ses_message_id"] == "0101-abc" and lines[0]["level"] == "info"
    assert lines[1]["logger"] == "aiohttp.client" and lines[1]["level"] == "warning"
    assert "s3cr3t" not in captured_logs.getvalue()
    assert "abc.def.ghi" not in captured_logs.getvalue()
    assert "apiKey=***" in lines[1]["event"]


def test_every_value_reaches_its_line_readable(captured_logs: io.StringIO) -> None:
    """Lines are made by orjson; what it refuses (an integer past 64 bits, a lone
    surrogate from a broken feed) still makes a line, and Japanese stays Japanese."""
    from datetime import UTC, datetime

    log = structlog.get_logger("jpixd.test.values")
    log.info("件名", title="大阪府の一部地域", at=datetime(2026, 12, 6, tzinfo=UTC), n={1: 2})
    log.info("huge", n=2 ** 70)
    log.info("broken", text="ab\udc80")
    raw = captured_logs.getvalue()
    lines = [json.loads(x) for x in raw.splitlines()]
    assert [x["event"] for x in lines] == ["件名", "huge", "broken"]
    assert "大阪府の一部地域" in raw  # not \u escapes: journalctl shows it as it is
    assert lines[0]["at"] == repr(datetime(2026, 12, 6, tzinfo=UTC)) and lines[0]["n"] == {"1": 2}
    assert lines[1]["n"] == 2 ** 70 and lines[2]["text"] == "ab\udc80"
    raw.encode("utf-8")  # every line can be written to a UTF-8 stdout


def test_each_line_says_when_in_utc_to_the_microsecond(captured_logs: io.StringIO) -> None:
    """The stamp is formatted once a second, not once a line: lines within a second and
    across one each carry their own time, as structlog's ISO stamper wrote it."""
    from datetime import UTC, datetime

    moments = [datetime(2026, 12, 6, 23, 59, 59, 999998, tzinfo=UTC),
               datetime(2026, 12, 6, 23, 59, 59, 999999, tzinfo=UTC),
               datetime(2026, 12, 7, 0, 0, 0, 0, tzinfo=UTC),
               datetime(2026, 12, 7, 0, 0, 0, 42, tzinfo=UTC)]
    clock = iter(int(m.timestamp()) * 10**9 + m.microsecond * 1000 + 7 for m in moments)
    stamp = logs._Stamp(clock=lambda: next(clock))
    assert [stamp(None, "info", {})["timestamp"] for _ in moments] == [
        m.isoformat(timespec="microseconds").replace("+00:00", "Z") for m in moments]
    # And the lines themselves, jpixd's and stdlib's, carry the time they were written.
    before = datetime.now(UTC)
    structlog.get_logger("jpixd.test.time").info("ours")
    logging.getLogger("aiohttp.client").warning("a stdlib line")
    after = datetime.now(UTC)
    stamps = [json.loads(x)["timestamp"] for x in captured_logs.getvalue().splitlines()]
    times = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps]
    assert len(times) == 2 and before <= times[0] <= times[1] <= after, stamps


def test_bound_keys_reach_the_lines_within_and_are_restored_after(
        captured_logs: io.StringIO) -> None:
    log = structlog.get_logger("jpixd.test.bound")
    with logs.bound(notice_id=1):
        with logs.bound(delivery_id=7, notice_id=2):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = [json.loads(x) for x in captured_logs.getvalue().splitlines()]
    assert (inner["delivery_id"], inner["notice_id"]) == (7, 2)
    assert outer["notice_id"] == 1 and "delivery_id" not in outer
    assert "notice_id" not in after and "delivery_id" not in after


def test_a_cached_logger_follows_a_new_stream_and_level() -> None:
    """structlog caches a logger on first use; a later configure() must still decide
    where its lines go and which are kept (the CLI, and every test, configures anew)."""
    first, second = io.StringIO(), io.StringIO()
    log = structlog.get_logger("jpixd.test.cached")
    logs.configure("info", "json", stream=first)
    log.info("one")
    logs.configure("warning", "json", stream=second)
    log.info("dropped: below the new level")
    log.warning("two")
    try:
        raise ValueError("boom s3cr3t-in-a-traceback")
    except ValueError:
        logs.REDACTOR.add(["s3cr3t-in-a-traceback"])
        log.exception("three")
    assert [json.loads(x)["event"] for x in first.getvalue().splitlines()] == ["one"]
    lines = [json.loads(x) for x in second.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["two", "three"]
    assert lines[1]["level"] == "error" and "ValueError: boom" in lines[1]["exception"]
    assert "s3cr3t" not in second.getvalue()
    assert lines[0]["logger"] == "jpixd.test.cached"


def test_passwords_in_urls_and_encoded_keys_are_masked() -> None:
    """Security probe L7: a feed behind basic auth, a Backlog key a server echoes
    URL-encoded."""
    assert REDACTOR.text("GET http://feed:S3cretFeedPass@ntt.example/rss failed") == \
        "GET http://feed:***@ntt.example/rss failed"
    assert REDACTOR.text("mail to noc@example.jp") == "mail to noc@example.jp"
    client = BacklogClient(None, "https://space.backlog.jp",  # type: ignore[arg-type]
                           "SeCrEtKey+with/special=chars&x1", metrics=Metrics())
    echoed = "error for /api/v2/issues?apiKey=SeCrEtKey%2Bwith%2Fspecial%3Dchars%26x1"
    assert "SeCrEt" not in client._clean(echoed)
    assert "SeCrEt" not in client._clean("key SeCrEtKey+with/special=chars&x1 refused")


def test_a_short_admin_token_is_refused(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("x\n")
    cfg = make_config(tmp_path, http={"listen": "127.0.0.1:0",
                                      "admin_token_file": str(tmp_path / "short")})
    with pytest.raises(ConfigError, match="at least 16"):
        admin_token(cfg)
