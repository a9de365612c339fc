"""kill -9 of a real `jpixd run` in the middle of sending 2,000 mails over SMTP, then a
restart: every delivery arrives at least once, and duplicates are at most the number of
sends in flight (`sending.concurrency`)."""

from __future__ import annotations

import email
import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.conftest import DaemonProcess, base_mapping, toml_dumps
from tests.smtpserver import PASSWORD, USER, Received, smtp_server

TOTAL = 2000
CONCURRENCY = 8
KILL_AT = 700


def test_kill_9_mid_send_loses_nothing(tmp_path: Path,
                                       daemon_process: Callable[..., DaemonProcess]) -> None:
    subs = tmp_path / "subs.csv"
    subs.write_text("email,carriers\n" + "".join(f"user{i}@isp.example.jp,west\n"
                                                  for i in range(TOTAL)))
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"notices": [{
        "id": "F1", "kind": "failure", "title": "大阪府の一部で故障", "prefectures": ["27"]}]},
        ensure_ascii=False), encoding="utf-8")
    (tmp_path / "smtp-password").write_text(PASSWORD)
    seen: Counter[str] = Counter()
    all_arrived = threading.Event()
    victim: list[DaemonProcess] = []

    def on_message(item: Received) -> None:
        msg = email.message_from_bytes(item.data)
        seen[msg["X-Jpixd-Delivery"]] += 1
        if victim and sum(seen.values()) == KILL_AT:
            victim[0].proc.kill()  # from the SMTP thread, mid-stream
        if len(seen) == TOTAL:
            all_arrived.set()

    with smtp_server(str(tmp_path)) as peer:
        peer.handler.on_message = on_message
        cfg = base_mapping(
            tmp_path, sample_subscribers=str(subs),
            sources=[{"name": "local", "kind": "json", "carrier": "west", "url": feed.as_uri(),
                      "interval": "1h", "send_on_first_poll": True}],
            sending={"concurrency": CONCURRENCY},
            mail={"from": "notice@example.jp", "transport": "smtp",
                  "ses": {"max_send_rate": 5000},
                  "smtp": {"host": peer.host, "port": peer.port, "starttls": True,
                           "username": USER, "password_file": str(tmp_path / "smtp-password"),
                           "pool_size": 4}})
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(cfg), encoding="utf-8")
        env = {"SSL_CERT_FILE": peer.ca_file}  # trust the test CA, as an operator would
        first = daemon_process(["run", "--config", str(path)], env)
        victim.append(first)
        assert first.finish(timeout=120) == -9, "".join(first.lines[-20:])
        arrived_before = len(seen)
        assert KILL_AT <= sum(seen.values()) and arrived_before < TOTAL

        second = daemon_process(["run", "--config", str(path)], env)
        assert all_arrived.wait(timeout=120), f"only {len(seen)} of {TOTAL} arrived"
        second.wait_for_event("mail sent")
        second.proc.terminate()
        assert second.finish(timeout=60) == 0

    assert set(seen) == {str(i) for i in range(1, TOTAL + 1)}
    duplicates = sum(seen.values()) - TOTAL
    assert duplicates <= CONCURRENCY, f"{duplicates} duplicates"
    # The restart found the killed process's claimed rows and sent them again; there are
    # never more of them than one claim (sending.claim_batch, 100 by default).
    [recovered] = [json.loads(ln) for ln in second.lines if "left in flight" in ln]
    assert 0 < recovered["count"] <= 100
    print(f"duplicates after kill -9: {duplicates}, resent: {recovered['count']}")  # noqa: T201


def test_a_self_service_mail_survives_kill_9(tmp_path: Path,
                                             daemon_process: Callable[..., DaemonProcess]) -> None:
    """Issue 24: a sign-up's confirmation is a row the sender sends. The daemon is killed
    while it sends it (the SMTP server has its MAIL FROM, not the message): after a
    restart it arrives, once. (Kept in memory, it was lost with the process.)"""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    from tests.webharness import web_mapping, write_feed

    (tmp_path / "smtp-password").write_text(PASSWORD)
    write_feed(tmp_path, [])
    victim: list[DaemonProcess] = []
    arrived = threading.Event()

    def on_mail_from() -> None:
        if victim and victim[0].proc.poll() is None:
            victim[0].proc.kill()  # mid-send: the first time only
            victim.clear()

    def on_message(item: Received) -> None:
        arrived.set()

    with smtp_server(str(tmp_path)) as peer:
        peer.handler.on_mail_from = on_mail_from
        peer.handler.on_message = on_message
        cfg = web_mapping(tmp_path, mail={
            "from": "notice@example.jp", "transport": "smtp",
            "smtp": {"host": peer.host, "port": peer.port, "starttls": True, "username": USER,
                     "password_file": str(tmp_path / "smtp-password")}})
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(cfg), encoding="utf-8")
        env = {"SSL_CERT_FILE": peer.ca_file}
        first = daemon_process(["run", "--config", str(path)], env)
        first.wait_for_event("jpixd ready")
        victim.append(first)
        # A visitor signs up: the page answers once the row is written.
        public = cfg["web"]["base_url"]
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(
            http.cookiejar.CookieJar()))
        with browser.open(public + "/s/", timeout=10) as page:
            match = re.search(r'name="csrf" value="([^"]+)"', page.read().decode())
        assert match is not None
        form = urllib.parse.urlencode([
            ("csrf", match.group(1)), ("email", "new@isp.example.jp"), ("carriers", "east"),
            ("kinds", "failure"), ("windows", "day")]).encode()
        with browser.open(public + "/s/", data=form, timeout=10) as answer:
            assert answer.url.endswith("/s/sent")
        assert first.finish(timeout=60) == -9, "".join(first.lines[-20:])
        assert not peer.handler.received  # killed before the message went

        second = daemon_process(["run", "--config", str(path)], env)
        assert arrived.wait(timeout=60), "".join(second.lines[-20:])
        second.wait_for_event("self-service mail sent")
        second.proc.terminate()
        assert second.finish(timeout=60) == 0
    [mail] = peer.handler.received
    assert mail.recipients == ["new@isp.example.jp"]
    body = mail.message().get_body(("plain",))
    assert body is not None and "/s/confirm?t=" in body.get_content()
