"""Shadow mode and the cut-over (issue 15), with the real commands: a shadow run sends
nothing and reports what it would have sent; a plain run refuses a database in shadow;
after `jpixd cutover`, only new notices and new revisions are mailed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import ADMIN_TOKEN, DaemonProcess, base_mapping, toml_dumps


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jpixd", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def feed(path: Path, notices: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"notices": notices}, ensure_ascii=False), encoding="utf-8")


def local_feed_config(tmp_path: Path, notices: list[dict[str, Any]], subscribers_csv: str) -> Path:
    """A JSON feed of `notices` polled every hour and mailed on its first poll, the
    subscribers loaded from `subscribers_csv`: returns the config's path. The feed is
    `tmp_path / "feed.json"`; rewrite it with `feed` to change what the next poll sees."""
    feed(tmp_path / "feed.json", notices)
    subs = tmp_path / "subs.csv"
    subs.write_text(subscribers_csv, encoding="utf-8")
    cfg = tmp_path / "jpixd.toml"
    cfg.write_text(toml_dumps(base_mapping(
        tmp_path, sample_subscribers=str(subs), sources=[{
            "name": "local", "kind": "json", "carrier": "east",
            "url": (tmp_path / "feed.json").as_uri(),
            "interval": "1h", "send_on_first_poll": True}])), encoding="utf-8")
    return cfg


def stop(p: DaemonProcess) -> None:
    p.proc.send_signal(signal.SIGTERM)
    assert p.finish() == 0


def test_shadow_then_cutover_mails_only_what_is_new(
        tmp_path: Path, daemon_process: Callable[..., DaemonProcess]) -> None:
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    failure = {"id": "F1", "kind": "failure", "title": "東京都の一部で故障",
               "prefectures": ["13"]}
    works = {"id": "W1", "kind": "construction", "title": "東京都の一部で設備工事",
             "prefectures": ["13"], "starts_at": start}
    source = tmp_path / "feed.json"
    cfg = local_feed_config(tmp_path, [failure, works],
                            "email,name\na@isp.example.jp,甲\nb@isp.example.jp,乙\n")
    outbox = tmp_path / "outbox"

    # Shadow: four mails rendered and kept (two notices, two subscribers), none sent.
    shadow = daemon_process(["run", "--shadow", "--config", str(cfg)])
    shadow.wait_until(lambda events: sum(e.get("event") == "mail kept, not sent (shadow)"
                                         for e in events) == 4, 30)
    stop(shadow)
    assert not outbox.exists() or list(outbox.iterdir()) == []

    # A plain run refuses the database until the cut-over.
    refused = cli("run", "--config", str(cfg), cwd=tmp_path)
    assert refused.returncode == 2 and "jpixd cutover" in refused.stderr

    report = cli("shadow", "report", "--full", "--config", str(cfg), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "4 mail(s) kept; the database is in shadow mode" in report.stdout
    assert "東京都の一部で故障" in report.stdout and "東京都の一部で設備工事" in report.stdout
    assert report.stdout.count("a@isp.example.jp") == 2
    assert "| 甲 様" in report.stdout  # the mail's text, as its recipient reads it

    dry = cli("cutover", "--config", str(cfg), cwd=tmp_path)
    assert dry.returncode == 0 and "--yes" in dry.stdout
    done = cli("cutover", "--yes", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 reminder(s) kept, 4 shadow mail(s)" in done.stdout
    again = cli("cutover", "--yes", "--config", str(cfg), cwd=tmp_path)
    assert again.returncode == 2 and "not in shadow mode" in again.stderr
    # A shadow drop-in left behind must not silently stop the mail again: refused.
    shadowing = cli("run", "--shadow", "--config", str(cfg), cwd=tmp_path)
    assert shadowing.returncode == 2 and "was cut over at" in shadowing.stderr

    # For real: the old notices stay quiet; a new one and a new report are mailed.
    feed(source, [{**failure, "title": "東京都の一部で故障（第2報）", "status": "recovered"},
                  works, {"id": "F2", "kind": "failure", "title": "神奈川県の一部で故障",
                          "prefectures": ["14"]}])
    real = daemon_process(["run", "--config", str(cfg)])
    listening = real.wait_for_event("http listening")
    real.wait_for_event("jpixd ready")
    # The source was polled by the shadow run: its next poll is an interval away. Now.
    request = urllib.request.Request(
        f"http://{listening['addresses'][0]}/admin/v1/sources/local/poll", method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        changes = json.loads(r.read())["changes"]
    assert sorted((c["external_id"], c["change"]) for c in changes) == [
        ("F1", "recover"), ("F2", "new")]
    real.wait_until(lambda events: sum(e.get("event") == "mail sent" for e in events) == 4, 30)
    stop(real)
    sent = [json.loads(line) for line in real.lines if '"mail sent"' in line]
    assert sorted(e["notice_id"] for e in sent) == [1, 1, 3, 3]  # F1's recovery, F2
    assert not any('"mail kept' in line for line in real.lines)
    assert len(list(outbox.glob("*.eml"))) == 4


def test_the_gap_between_the_old_system_stopping_and_the_cutover_is_mailed_once(
        tmp_path: Path, daemon_process: Callable[..., DaemonProcess]) -> None:
    """Issue 23: a notice first seen after the old system stopped sending was taken as
    announced by the cut-over and mailed by neither system. `cutover --since` keeps it
    unsent, says which it is, and the first live run mails exactly that."""
    before = {"id": "F1", "kind": "failure", "title": "東京都の一部で故障", "prefectures": ["13"]}
    after = {"id": "F2", "kind": "failure", "title": "神奈川県の一部で故障",
             "prefectures": ["14"]}
    source = tmp_path / "feed.json"
    cfg = local_feed_config(tmp_path, [before], "email\na@isp.example.jp\nb@isp.example.jp\n")

    shadow = daemon_process(["run", "--shadow", "--config", str(cfg)])
    listening = shadow.wait_for_event("http listening")
    shadow.wait_until(lambda events: sum(e.get("event") == "mail kept, not sent (shadow)"
                                         for e in events) == 2, 30)
    stopped = datetime.now(UTC)  # the old system stops sending here
    feed(source, [before, after])
    request = urllib.request.Request(
        f"http://{listening['addresses'][0]}/admin/v1/sources/local/poll", method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert [c["external_id"] for c in json.loads(r.read())["changes"]] == ["F2"]
    shadow.wait_until(lambda events: sum(e.get("event") == "mail kept, not sent (shadow)"
                                         for e in events) == 4, 30)
    stop(shadow)

    since = stopped.isoformat()
    dry = cli("cutover", "--since", since, "--config", str(cfg), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "to be mailed: notice #2 神奈川県の一部で故障 (2 recipient(s))" in dry.stdout
    assert "東京都" not in dry.stdout
    bad = cli("cutover", "--since", "yesterday", "--config", str(cfg), cwd=tmp_path)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    done = cli("cutover", "--yes", "--since", since, "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 notice mail(s) first seen after" in done.stdout

    real = daemon_process(["run", "--config", str(cfg)])
    real.wait_until(lambda events: sum(e.get("event") == "mail sent" for e in events) == 2, 30)
    stop(real)
    sent = [json.loads(line) for line in real.lines if '"mail sent"' in line]
    assert sorted(e["notice_id"] for e in sent) == [2, 2]  # F2 only, to both, once
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


async def test_the_public_pages_during_the_rehearsal(tmp_path: Path) -> None:
    """Issue 23: during the shadow weeks nothing is mailed. Sign-up, link and settings
    pages say so plainly and point to the old system's page (nothing taken that would
    be lost); one-click unsubscribe works for real and is among the changes exported for
    the old system; the board works."""
    import aiohttp

    from jpixd.model import Subscriber, SubscriberStatus
    from tests.webharness import site

    old_pages = "https://old.example.jp/mail/"
    async with site(tmp_path, shadow=True, web={"rehearsal_url": old_pages}) as s:
        sub = await s.rt.store.create_subscriber(Subscriber(email="noc@isp.example.jp"),
                                                 s.rt.clock())
        assert sub.id is not None
        links = s.d.daemon.public.links  # type: ignore[union-attr]
        manage = links.manage(sub.id, s.rt.clock()).removeprefix(s.public)
        for path in ("/s/", "/s/link", manage):
            async with s.http.get(s.public + path) as r:
                text = await r.text()
                assert r.status == 503 and "切り替え前の確認中" in text, path
                assert f'href="{old_pages}"' in text
        async with s.http.post(s.public + "/s/", data={"email": "new@isp.example.jp"},
                               allow_redirects=False) as r:
            assert r.status == 503
        assert await s.rt.store.subscriber_by_email("new@isp.example.jp") is None
        unsubscribe = links.unsubscribe(sub.id)
        async with aiohttp.ClientSession() as client, client.post(
                unsubscribe, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200
        left = await s.rt.store.get_subscriber(sub.id)
        assert left is not None and left.status == SubscriberStatus.UNSUBSCRIBED
        changed = await s.rt.store.subscribers_changed_since(s.rt.clock() - timedelta(hours=1))
        assert [(c.email, c.status) for c in changed] == \
            [("noc@isp.example.jp", SubscriberStatus.UNSUBSCRIBED)]
        async with s.http.get(s.public + "/notices") as r:
            assert r.status == 200
