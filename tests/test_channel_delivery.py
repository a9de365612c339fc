"""Channels beyond mail, wired (issue 26): added through the admin API, verified by a
test message, sent each matching report from the outbox, retried, paused after repeated
404/410, given up after max_attempts, and never shown whole. Against a real receiver on
loopback that checks signatures and answers as told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from jpixd.fanout import Policy, planner
from jpixd.model import JST, Change, Changed, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.runtime import Runtime
from jpixd.store import AnyStore
from jpixd.store.sqlite import Store
from tests.channelreceiver import Arrival, Receiver, channel_receiver
from tests.conftest import (
    ADMIN_TOKEN,
    DaemonProcess,
    base_mapping,
    make_config,
    on_backend,
    running_daemon,
    toml_dumps,
)
from tests.webharness import CSRF, site

CHANNELS = {"allow_http": True, "allowed_networks": ["127.0.0.1/32"], "backoff": "1s",
            "backoff_max": "2s", "max_attempts": 3, "pause_after_gone": 2}
FAILURE = Notice(source="east", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                 status=NoticeStatus.OCCURRED, title="東京都の一部でフレッツ光がご利用しづらい状況",
                 prefectures=("13",), localities=("千代田区",), services=("フレッツ光ネクスト",),
                 starts_at=datetime(2026, 12, 6, 7, 40, tzinfo=JST), body="原因を調査中です。")
# A path as secret as a Slack webhook's: it must never be shown back.
SECRET_PATH = "hook-T0KENS3CRETxyz"


@dataclass
class Env:
    http: aiohttp.ClientSession
    api: str
    rt: Runtime
    rx: Receiver
    base: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.api + path, json=body) as r:
            return r.status, await r.json()

    async def subscriber(self) -> int:
        status, sub = await self.call("POST", "/subscribers", {
            "email": "noc@isp.example.jp", "carriers": ["east"], "kinds": ["failure"]})
        assert status == 201, sub
        return int(sub["id"])

    async def until(self, done: Callable[[], Awaitable[bool]], what: str) -> None:
        """Round after round of the channel loop, until `done()` (awaited) is true."""
        loop = self.rt.loops["channels"]
        for _ in range(40):
            if await done():
                return
            self.rt.wake("channels")
            await loop.next_round()
        raise AssertionError(f"not within 40 rounds: {what}")

    async def channel(self, sid: int, cid: int) -> dict[str, Any]:
        status, got = await self.call("GET", f"/subscribers/{sid}/channels")
        assert status == 200, got
        return next(c for c in got["items"] if c["id"] == cid)

    async def add(self, sid: int, kind: str, path: str) -> dict[str, Any]:
        status, ch = await self.call("POST", f"/subscribers/{sid}/channels",
                                     {"kind": kind, "url": self.rx.url(path)})
        assert status == 201, ch
        if kind == "webhook":
            self.rx.secrets[path] = ch["secret"].encode()
        return dict(ch)

    async def active(self, sid: int, cid: int) -> None:
        async def done() -> bool:
            return bool((await self.channel(sid, cid))["state"] == "active")
        await self.until(done, f"channel {cid} active")

    async def record(self, notice: Notice, change: Change, revision: str) -> None:
        now = datetime.now(UTC)
        await self.rt.store.record_revision(
            notice, revision=revision, change=change, now=now,
            planner=planner(notice, change, now, Policy(tz=JST)))
        self.rt.wake("channels")

    async def metric(self, kind: str, result: str) -> float:
        async with self.http.get(self.base + "/metrics") as r:
            text = await r.text()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "jpixd_channel_messages_total" and s.labels == {
                        "kind": kind, "result": result}:
                    return float(s.value)
        raise AssertionError(f"no series for {kind} {result}")


@pytest.fixture
async def env(tmp_path: Path, backend_url: str | None) -> AsyncIterator[Env]:
    with channel_receiver() as rx:
        cfg = make_config(tmp_path, channels=CHANNELS, **on_backend(backend_url))
        async with running_daemon(cfg, registry=CollectorRegistry()) as d:
            assert d.daemon.runtime is not None
            async with aiohttp.ClientSession(headers=d.headers) as http:
                yield Env(http, d.base_url + "/admin/v1", d.daemon.runtime, rx, d.base_url)


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files("jpixd.channels").joinpath(
        "webhook-v1.schema.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _of(path: str, n: int) -> Callable[[list[Arrival]], bool]:
    return lambda arrivals: sum(a.path == path for a in arrivals) >= n


async def test_a_webhook_is_verified_then_gets_each_report_signed(env: Env) -> None:
    sid = await env.subscriber()
    ch = await env.add(sid, "webhook", SECRET_PATH)
    assert ch["state"] == "verifying" and len(ch["secret"]) == 64
    assert SECRET_PATH not in json.dumps(ch) and ch["url"].startswith("http://127.0.0.1/…")
    [test] = await env.rx.wait(_of(SECRET_PATH, 1))
    assert test.signed_by(ch["secret"].encode()) and test.json()["event"] == "channel.test"
    _validator().validate(test.json())
    await env.active(sid, ch["id"])

    await env.record(FAILURE, Change.NEW, "r1")
    recovered = replace(FAILURE, status=NoticeStatus.RECOVERED,
                        ends_at=datetime(2026, 12, 6, 9, 10, tzinfo=JST),
                        changes=(Changed("状況", "発生中", "回復"),))
    arrivals = await env.rx.wait(_of(SECRET_PATH, 2))
    await env.record(recovered, Change.RECOVER, "r2")
    arrivals = await env.rx.wait(_of(SECRET_PATH, 3))
    reports = [a for a in arrivals if a.path == SECRET_PATH][1:]
    for a in reports:
        _validator().validate(a.json())
        assert a.signed is True and a.headers["Idempotency-Key"] == a.json()["id"]
    assert [a.json()["event"] for a in reports] == ["notice.new", "notice.recover"]
    assert reports[1].json()["notice"]["changes"] == [
        {"field": "状況", "before": "発生中", "after": "回復"}]
    assert len({a.headers["Idempotency-Key"] for a in reports}) == 2

    async def all_sent() -> bool:
        _, got = await env.call("GET", f"/subscribers/{sid}/channels")
        return [m["state"] for m in got["messages"]] == ["sent"] * 3
    await env.until(all_sent, "three messages recorded as sent")
    _, listed = await env.call("GET", f"/subscribers/{sid}/channels")
    text = json.dumps(listed)
    assert SECRET_PATH not in text and ch["secret"] not in text  # never shown back whole
    assert await env.metric("webhook", "sent") == 3
    _, status = await env.call("GET", "/status")
    assert status["channel_messages"] == {"sent": 3}
    assert status["loops"]["channels"]["up"] is True
    assert await env.metric("slack", "gone") == 0  # every series from start
    # Who added it is in the subscriber's history, the URL as shown.
    _, history = await env.call("GET", f"/subscribers/{sid}/changes")
    assert any(c["action"] == "channel added" and SECRET_PATH not in c["detail"]
               for c in history["items"])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_slack_and_teams_get_their_own_payloads(env: Env) -> None:
    sid = await env.subscriber()
    slack = await env.add(sid, "slack", "slack-hook")
    teams = await env.add(sid, "teams", "teams-hook")
    await env.rx.wait(lambda a: _of("slack-hook", 1)(a) and _of("teams-hook", 1)(a))
    await env.active(sid, slack["id"])
    await env.active(sid, teams["id"])
    await env.record(FAILURE, Change.NEW, "r1")
    await env.record(replace(FAILURE, external_id="F2", title="埼玉県の一部で故障"),
                     Change.NEW, "r1")
    await env.rx.wait(lambda a: _of("slack-hook", 3)(a) and _of("teams-hook", 3)(a))
    # Slack takes one message a second per webhook: the second waited its turn.
    first, second = env.rx.at("slack-hook")[1:]
    assert second.at - first.at >= 0.95
    s = env.rx.at("slack-hook")[1].json()
    assert s["blocks"][0]["type"] == "header" and FAILURE.title in s["blocks"][0]["text"]["text"]
    facts = json.dumps(s["blocks"][1], ensure_ascii=False)
    assert "東京都" in facts and "千代田区" in facts
    card = env.rx.at("teams-hook")[1].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert FAILURE.title in card["content"]["body"][0]["text"]
    # Slack and Teams are not signed (they check nothing); a webhook is.
    assert all("X-Jpixd-Signature" not in a.headers for a in env.rx.arrivals)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_retry_after_is_honoured_and_repeated_410_pauses_the_channel(env: Env) -> None:
    sid = await env.subscriber()
    ch = await env.add(sid, "webhook", "hook")
    await env.active(sid, ch["id"])
    env.rx.answer("hook", (429, {"Retry-After": "2"}), 200)
    await env.record(FAILURE, Change.NEW, "r1")
    arrivals = [a for a in await env.rx.wait(_of("hook", 3)) if a.path == "hook"]
    first, again = arrivals[1], arrivals[2]
    assert again.at - first.at >= 2.0  # the receiver's Retry-After, over the 1 s backoff
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"]

    env.rx.answer("hook", 410, 404)
    await env.record(replace(FAILURE, report_number=2, body="復旧作業中です。"),
                     Change.UPDATE, "r2")
    await env.rx.wait(_of("hook", 5))

    async def paused() -> bool:
        return bool((await env.channel(sid, ch["id"]))["state"] == "paused")
    await env.until(paused, "paused after two 404/410 in a row")
    got = await env.channel(sid, ch["id"])
    assert got["paused_reason"] == "gone" and got["last_status"] == 404
    _, status = await env.call("GET", "/status")
    assert [c["paused_reason"] for c in status["channels_in_trouble"]] == ["gone"]
    assert await env.metric("webhook", "gone") == 2
    assert await env.metric("webhook", "retry") == 1
    # Paused: a new report makes no message for it.
    await env.record(replace(FAILURE, report_number=3), Change.UPDATE, "r3")
    _, listed = await env.call("GET", f"/subscribers/{sid}/channels")
    assert [m["state"] for m in listed["messages"]] == ["failed", "sent", "sent"]
    assert listed["messages"][0]["reason"] == "gone"
    # The operator resumes it (it was verified before).
    status, resumed = await env.call("PATCH", f"/subscribers/{sid}/channels/{ch['id']}",
                                     {"state": "active"})
    assert status == 200 and resumed["state"] == "active" and resumed["gone_count"] == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_receiver_that_keeps_failing_is_given_up(env: Env) -> None:
    sid = await env.subscriber()
    ch = await env.add(sid, "webhook", "hook")
    await env.active(sid, ch["id"])
    env.rx.answer("hook", 500, 503, 502)
    await env.record(FAILURE, Change.NEW, "r1")
    await env.rx.wait(_of("hook", 4))

    async def failed() -> bool:
        _, got = await env.call("GET", f"/subscribers/{sid}/channels")
        return bool(got["messages"]) and got["messages"][0]["state"] == "failed"
    await env.until(failed, "failed after max_attempts")
    _, got = await env.call("GET", f"/subscribers/{sid}/channels")
    assert got["messages"][0]["reason"] == "gave up after 3 attempts: HTTP 502"
    assert got["messages"][0]["attempts"] == 3
    assert await env.metric("webhook", "failed") == 1
    assert await env.metric("webhook", "retry") == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_channel_is_active_only_once_its_test_is_answered(env: Env) -> None:
    sid = await env.subscriber()
    env.rx.answer("hook", 404)
    ch = await env.add(sid, "webhook", "hook")
    await env.rx.wait(_of("hook", 1))

    async def answered() -> bool:
        return bool((await env.channel(sid, ch["id"]))["last_status"] == 404)
    await env.until(answered, "the test's 404 recorded")
    assert (await env.channel(sid, ch["id"]))["state"] == "verifying"
    await env.record(FAILURE, Change.NEW, "r1")  # not active: nothing for it
    url = f"/subscribers/{sid}/channels/{ch['id']}"
    status, refused = await env.call("PATCH", url, {"state": "active"})
    assert status == 409 and refused["error"]["code"] == "not_verified"
    status, _ = await env.call("PATCH", url, {"test": True})
    assert status == 200
    await env.active(sid, ch["id"])
    assert [a.json()["event"] for a in env.rx.at("hook")] == ["channel.test"] * 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_bad_channels_are_refused_and_private_addresses_never_reached(env: Env) -> None:
    sid = await env.subscriber()
    base = f"/subscribers/{sid}/channels"
    for body, field in (({"kind": "discord", "url": "https://example.jp/x"}, "kind"),
                        ({"kind": "slack", "url": "ftp://example.jp/x"}, "url"),
                        ({"kind": "slack", "url": "https://user:pw@example.jp/x"}, "url"),
                        ({"kind": "teams"}, "url")):
        status, got = await env.call("POST", base, body)
        assert status == 400 and field in got["error"]["fields"], (body, got)
    status, got = await env.call("POST", "/subscribers/999999/channels",
                                 {"kind": "slack", "url": "https://example.jp/x"})
    assert status == 404
    # The metadata service: accepted as a URL, refused when its address is looked at.
    status, meta = await env.call("POST", base, {"kind": "webhook",
                                                 "url": "http://169.254.169.254/latest"})
    assert status == 201

    async def refused() -> bool:
        return (await env.channel(sid, meta["id"]))["last_error"] is not None
    await env.until(refused, "the metadata address refused")
    got = await env.channel(sid, meta["id"])
    assert got["state"] == "verifying" and "may not use" in got["last_error"]
    # The operator sees it on the console's status page, and in /status.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as op:
        async with op.post(env.base + "/console/login", data={"token": ADMIN_TOKEN}) as r:
            assert r.status == 200
        async with op.get(env.base + "/console/") as r:
            page = await r.text()
    trouble = page.split('id="channel-troubles"')[1].split("</ul>")[0]
    assert "noc@isp.example.jp" in trouble and "http://169.254.169.254/…test" in trouble
    assert "送れない宛先です" in trouble
    _, status = await env.call("GET", "/status")
    assert [(c["id"], c["email"]) for c in status["channels_in_trouble"]] == [
        (meta["id"], "noc@isp.example.jp")]
    for i in range(4):
        status, _ = await env.call("POST", base, {"kind": "slack",
                                                  "url": f"https://example.jp/{i}"})
        assert status == 201
    status, got = await env.call("POST", base, {"kind": "slack", "url": "https://example.jp/6"})
    assert status == 400 and "channels" in got["error"]["fields"]
    status, _ = await env.call("DELETE", f"{base}/{meta['id']}")
    assert status == 200
    status, _ = await env.call("DELETE", f"{base}/{meta['id']}")
    assert status == 404


def test_the_time_of_a_retry() -> None:
    """Pure: what becomes of a message after each kind of answer."""
    import random

    from jpixd.channels.outcomes import next_step, skip_reason
    from jpixd.channels.post import Outcome
    from jpixd.config import ChannelsConfig

    cfg = ChannelsConfig(max_attempts=3, backoff=timedelta(seconds=10),
                         backoff_max=timedelta(seconds=60))
    now = datetime(2026, 12, 6, tzinfo=UTC)
    rng = random.Random(1)

    def step(result: str, attempts: int, purpose: str = "notice",
             wait: float | None = None) -> Any:
        return next_step(Outcome(result, 503, wait, "HTTP 503"), purpose=purpose,
                         attempts=attempts, cfg=cfg, now=now, rng=rng)

    first = step("retry", 1)
    assert first.action == "retry" and 5 <= (first.at - now).total_seconds() <= 10
    assert (step("retry", 1, wait=120).at - now).total_seconds() == 120  # Retry-After
    assert step("retry", 3).action == "failed"  # max_attempts spent
    assert step("gone", 1).action == "gone" and step("gone", 1).at is not None
    assert step("gone", 1, "test").at is None  # a test is tried once
    assert step("retry", 1, "test").action == "failed"
    assert step("sent", 1).action == "sent"
    assert skip_reason("notice", "paused") == "channel paused"
    assert skip_reason("test", "paused") is None
    assert skip_reason("test", "removed") == "channel removed"


def test_kill_9_mid_delivery_sends_each_message_again_with_its_key(
        tmp_path: Path, daemon_process: Callable[..., DaemonProcess]) -> None:
    """A real `jpixd run`, killed while its three channel messages are in flight (the
    receiver holds them unanswered): the restart sends each again, with the same
    idempotency key, and records it sent. Nothing lost; a repeat only of what was in
    flight, which the key lets a receiver drop."""
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"notices": [{
        "id": "F1", "kind": "failure", "title": "大阪府の一部で故障", "prefectures": ["27"]}]},
        ensure_ascii=False), encoding="utf-8")
    mapping = base_mapping(tmp_path, channels=CHANNELS, sources=[{
        "name": "local", "kind": "json", "carrier": "west", "url": feed.as_uri(),
        "interval": "1h", "send_on_first_poll": True}])
    path = tmp_path / "jpixd.toml"
    path.write_text(toml_dumps(mapping), encoding="utf-8")
    db = tmp_path / "state" / "jpixd.sqlite3"
    paths = ("crash-hook", "crash-slack", "crash-teams")
    with channel_receiver() as rx:
        asyncio.run(_verified_channels(db, rx, paths))
        for p in paths:
            rx.answer(p, 0)  # held: no answer until the receiver closes
        victim: list[DaemonProcess] = []

        def on_arrival(a: Arrival) -> None:
            if victim and len(rx.arrivals) == len(paths):
                victim[0].proc.kill()

        rx.on_arrival = on_arrival
        first = daemon_process(["run", "--config", str(path)])
        victim.append(first)
        assert first.finish(timeout=60) == -9, "".join(first.lines[-20:])
        assert sorted(a.path for a in rx.arrivals) == sorted(paths)

        second = daemon_process(["run", "--config", str(path)])
        arrivals = rx.wait_for(lambda a: len(a) == 2 * len(paths), 30)
        resent = second.wait_for_event("channel messages claimed before a crash will go again")
        assert resent["count"] == len(paths)
        for p in paths:
            before, after = rx.at(p)
            assert before.headers["Idempotency-Key"] == after.headers["Idempotency-Key"]
            # The same message again: only the webhook's `sent_at` may have moved.
            assert {**before.json(), "sent_at": ""} == {**after.json(), "sent_at": ""}
        hook = [a for a in arrivals if a.path == "crash-hook"]
        assert all(a.signed for a in hook)
        assert hook[1].json()["notice"]["title"] == "大阪府の一部で故障"
        assert rx.at("crash-slack")[1].json()["blocks"][0]["type"] == "header"
        assert "attachments" in rx.at("crash-teams")[1].json()
        second.wait_until(lambda lines: sum(
            ln.get("event") == "channel message" and ln.get("result") == "sent"
            and ln.get("purpose") == "notice" for ln in lines) == len(paths), timeout=20)
        second.proc.terminate()
        assert second.finish(timeout=30) == 0
    states = asyncio.run(_message_states(db))
    assert states == [("test", "sent", 1)] * 3 + [("notice", "sent", 2)] * 3


async def _verified_channels(db: Path, rx: Receiver, paths: tuple[str, ...]) -> None:
    """A subscriber with a webhook, a Slack and a Teams channel, each verified (its test
    message claimed and answered, as the channel loop records it)."""
    store = await Store.open(db)
    try:
        now = datetime.now(UTC)
        await store.migrate(now)
        sub = await store.create_subscriber(
            Subscriber(email="noc@isp.example.jp", carriers=("west",), kinds=("failure",)), now)
        assert sub.id is not None
        for kind, p in zip(("webhook", "slack", "teams"), paths, strict=True):
            ch = await store.add_channel(sub.id, kind, rx.url(p), "s" * 64, now, actor="admin")
            rx.secrets.update({p: ch.secret.encode()} if kind == "webhook" else {})
        for msg in await store.claim_channel_messages(now, 10, claimer="setup",
                                                      lease_until=now + timedelta(minutes=1)):
            await store.channel_message_sent(msg, now, 200)
    finally:
        await store.close()


async def _message_states(db: Path) -> list[tuple[str, str, int]]:
    store = await Store.open(db)
    try:
        items, _ = await store.list_channel_messages(limit=10)
        return [(m["purpose"], m["state"], m["attempts"]) for m in reversed(items)]
    finally:
        await store.close()


def _page_csrf(text: str) -> str:
    m = CSRF.search(text)
    assert m is not None
    return m.group(1)


async def test_the_console_and_the_manage_page_add_test_pause_and_remove(
        tmp_path: Path) -> None:
    """The operator on the console and the subscriber on their manage page: the same
    form, the URL never shown whole, errors in Japanese, each change in the history."""
    with channel_receiver() as rx:
        async with site(tmp_path, channels=CHANNELS) as s:
            sub = await s.rt.store.create_subscriber(
                Subscriber(email="noc@isp.example.jp", kinds=("failure",)), s.rt.clock())
            assert sub.id is not None
            op = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            async with op:
                async with op.post(s.d.base_url + "/console/login",
                                   data={"token": ADMIN_TOKEN}) as r:
                    assert r.status == 200
                page = s.d.base_url + f"/console/subscribers/{sub.id}"

                async def console(action: str, **fields: str) -> tuple[int, str]:
                    async with op.get(page) as r:
                        csrf = _page_csrf(await r.text())
                    async with op.post(page + "/channels", data={
                            "csrf": csrf, "action": action, **fields}) as r:
                        return r.status, await r.text()

                status, text = await console("channel_add", channel_kind="slack",
                                             channel_url="ftp://example.jp/x")
                assert status == 400 and "https:// で始まる URL を入力してください" in text
                assert "ftp://example.jp/x" in text  # what was typed, kept to be mended
                status, text = await console("channel_add", channel_kind="webhook",
                                             channel_url=rx.url(SECRET_PATH))
                assert status == 200 and "通知先を追加しました" in text
                [ch] = await s.rt.store.channels_of(sub.id)
                assert ch.secret in text  # the signing key, shown this once
                rx.secrets[SECRET_PATH] = ch.secret.encode()
                await rx.wait(_of(SECRET_PATH, 1))
                async with op.get(page) as r:
                    text = await r.text()
                assert SECRET_PATH not in text and ch.secret not in text
                assert "http://127.0.0.1/…" in text
                status, text = await console(f"channel_pause:{ch.id}")
                assert status == 200 and "一時停止しました" in text
                status, text = await console(f"channel_test:{ch.id}")  # paused: tested too
                await rx.wait(_of(SECRET_PATH, 2))
                assert all(a.signed_by(ch.secret.encode()) for a in rx.at(SECRET_PATH))

            # The subscriber, on the page their signed link opens.
            assert s.d.daemon.public is not None
            manage = s.d.daemon.public.links.manage(sub.id, s.rt.clock())
            async with s.http.get(manage) as r:
                text = await r.text()
                assert r.status == 200 and 'id="channel-list"' in text
                assert SECRET_PATH not in text
            token = manage.split("t=", 1)[1]

            async def self_service(action: str, **fields: str) -> tuple[int, str]:
                async with s.http.get(manage) as r:
                    csrf = _page_csrf(await r.text())
                async with s.http.post(s.public + "/s/manage", data={
                        "t": token, "csrf": csrf, "action": action, **fields}) as r:
                    return r.status, await r.text()

            status, text = await self_service("channel_add", channel_kind="teams",
                                              channel_url="https://u:p@example.jp/x")
            assert status == 400 and "ユーザー名やパスワードを含まない URL" in text
            status, text = await self_service("channel_add", channel_kind="teams",
                                              channel_url=rx.url("teams-hook"))
            assert status == 200 and "通知先を追加しました" in text
            await rx.wait(_of("teams-hook", 1))
            status, text = await self_service(f"channel_remove:{ch.id}")
            assert status == 200 and "削除しました" in text
            assert [c.kind for c in await s.rt.store.channels_of(sub.id)] == ["teams"]
            history = await s.rt.store.subscriber_changes(sub.id)
            assert [(c.actor, c.action) for c in reversed(history)] == [
                ("admin", "created"), ("console", "channel added"),
                ("console", "channel changed"), ("self-service", "channel added"),
                ("self-service", "channel removed")]


async def test_fan_out_archive_and_retention_of_channel_messages(store: AnyStore,
                                                                 now: datetime) -> None:
    """On both databases: a revision adds one message per active channel whose
    subscriber it matches (a paused or unverified channel gets none, nor another
    subscriber's), a newer report supersedes the unsent one, each end is archived
    without its URL, and finished messages are pruned while a queued one stays."""
    await store.set_archiving(True)
    sub = await store.create_subscriber(Subscriber(email="noc@isp.example.jp",
                                                   kinds=("failure",)), now)
    other = await store.create_subscriber(Subscriber(email="x@isp.example.jp",
                                                     kinds=("construction",)), now)
    assert sub.id is not None and other.id is not None
    lease = now + timedelta(minutes=1)
    made = [await store.add_channel(sid, kind, f"https://hooks.example.jp/{kind}", "k" * 64,
                                    now, actor="admin")
            for sid, kind in ((sub.id, "slack"), (sub.id, "webhook"), (sub.id, "teams"),
                              (other.id, "slack"))]
    for msg in await store.claim_channel_messages(now, 10, claimer="t", lease_until=lease):
        if msg.channel.kind != "teams":  # the Teams one never answered: unverified
            await store.channel_message_sent(msg, now, 200)
        else:
            await store.channel_message_failed(msg, now, None, "no answer")
    await store.set_channel(sub.id, made[1].id, now, actor="admin", active=False)
    await store.record_revision(FAILURE, revision="r1", change=Change.NEW, now=now,
                                planner=planner(FAILURE, Change.NEW, now, Policy(tz=JST)))
    items, _ = await store.list_channel_messages(limit=20)
    queued = [m for m in items if m["state"] == "queued"]
    # Only the active, verified Slack channel of the matching subscriber.
    assert [(m["channel_id"], m["purpose"]) for m in queued] == [(made[0].id, "notice")]
    later = now + timedelta(minutes=5)
    await store.record_revision(replace(FAILURE, report_number=2), revision="r2",
                                change=Change.UPDATE, now=later,
                                planner=planner(FAILURE, Change.UPDATE, later, Policy(tz=JST)))
    items, _ = await store.list_channel_messages(limit=20)
    assert [(m["state"], m["reason"]) for m in items[:2]] == [
        ("queued", None), ("skipped", "superseded")]
    records = [json.loads(line) for _, line in await store.archive_batch(500, 1 << 20)]
    ends = [(r["kind"], r["purpose"], r["state"]) for r in records
            if r["type"] == "channel_message"]
    assert ends == [("slack", "test", "sent"), ("webhook", "test", "sent"),
                    ("teams", "test", "failed"), ("slack", "test", "sent"),
                    ("slack", "notice", "skipped")]
    assert "hooks.example.jp" not in json.dumps(records)  # never a URL in the archive
    pruned = await store.prune({"channel_messages": later + timedelta(days=1)})
    assert pruned.counts["channel_messages"] == 5
    items, _ = await store.list_channel_messages(limit=20)
    assert [m["state"] for m in items] == ["queued"]


async def test_one_test_message_waits_at_a_time(store: AnyStore, now: datetime) -> None:
    """Pressing テスト送信 ten times queues one test: a URL on a manage page may be
    anybody's, and the subscriber must not make jpixd post to it at will."""
    sub = await store.create_subscriber(Subscriber(email="noc@isp.example.jp"), now)
    assert sub.id is not None
    ch = await store.add_channel(sub.id, "webhook", "https://hooks.example.jp/a", "k" * 64,
                                 now, actor="admin")
    ids = {await store.test_channel(sub.id, ch.id, now) for _ in range(10)}
    assert len(ids) == 1
    [msg] = await store.claim_channel_messages(now, 10, claimer="t",
                                               lease_until=now + timedelta(minutes=1))
    assert msg.id in ids
    await store.channel_message_sent(msg, now, 200)
    assert await store.test_channel(sub.id, ch.id, now) not in ids  # the next one, once sent


async def test_what_came_of_an_attempt_reads_in_japanese() -> None:
    """The console and the manage page say a channel's last error in Japanese; checked
    against the messages the real code writes (a changed message fails here)."""
    import random

    from jpixd.channels import post
    from jpixd.channels.outcomes import next_step
    from jpixd.config import ChannelsConfig
    from jpixd.web.words import channel_error_in_words as words

    now = datetime.now(UTC)
    async with post.session() as client:
        refused = await post.post(client, "https://169.254.169.254/x", b"{}", {}, now=now)
    assert words(refused.error) == "送れない宛先です（社内・予約済みなど公開されていないアドレス）"
    gave_up = next_step(post.Outcome("retry", 503, None, "HTTP 503"), purpose="notice",
                        attempts=8, cfg=ChannelsConfig(), now=now, rng=random.Random(1))
    assert words(gave_up.reason) == \
        "8 回試しましたが送れませんでした（HTTP 503 の応答がありました）"
    assert words("something new") == "something new"


async def test_every_outcome_is_recorded_alike_on_both_databases(store: AnyStore,
                                                                 now: datetime) -> None:
    """The channel loop's writes, each on both databases: a retry queues the message
    again for later, 404/410 counts toward the pause (and the pause skips what waits),
    a release puts a claim back, a crash's claims go again, and the CSV's channels
    column adds and removes."""
    sub = await store.create_subscriber(Subscriber(email="noc@isp.example.jp"), now)
    assert sub.id is not None
    ch = await store.add_channel(sub.id, "slack", "https://hooks.example.jp/a", "k" * 64, now,
                                 actor="admin")
    lease = now + timedelta(minutes=1)
    [test] = await store.claim_channel_messages(now, 10, claimer="a", lease_until=lease)
    await store.channel_message_sent(test, now, 200)
    for n in (1, 2, 3):
        await store.test_channel(sub.id, ch.id, now)
        [msg] = await store.claim_channel_messages(now, 10, claimer="a", lease_until=lease)
        assert msg.attempts == 1
        if n == 1:  # a 503: again in a minute, not before
            await store.channel_message_retry(msg, now, now + timedelta(minutes=1), 503,
                                              "HTTP 503")
            for before in (now, now + timedelta(minutes=1, microseconds=-1)):
                assert await store.claim_channel_messages(before, 10, claimer="a",
                                                          lease_until=lease) == []
            [again] = await store.claim_channel_messages(now + timedelta(minutes=1), 10,
                                                         claimer="a", lease_until=lease)
            assert again.attempts == 2
            await store.channel_message_release(again.id)  # a shutdown: put back
            [back] = await store.claim_channel_messages(now + timedelta(minutes=1), 10,
                                                        claimer="b", lease_until=lease)
            assert back.attempts == 2
            await store.channel_message_skipped(back, now, "channel paused")
        else:
            paused = await store.channel_gone(msg, now, 410, limit=2, retry_at=None)
            assert paused is (n == 3)
    got = await store.get_channel(sub.id, ch.id)
    assert (got.state, got.paused_reason, got.gone_count) == ("paused", "gone", 2)
    # A crash's claim: recovered for its claimer (any database), and on start-up (SQLite).
    await store.test_channel(sub.id, ch.id, now)
    [held] = await store.claim_channel_messages(now, 10, claimer="dead", lease_until=lease)
    assert await store.recover_channel_messages("dead") == 1
    [again] = await store.claim_channel_messages(now, 10, claimer="dead", lease_until=lease)
    assert again.id == held.id
    # On a shared database another host's claim is left to its lease.
    assert await store.recover_channel_messages() == (1 if store.sole_claimer else 0)
    # The CSV column: the shown URL keeps the channel, a new URL adds one; a channel
    # the cell leaves out is removed.
    from jpixd.channels.urls import shown

    async def csv(*wanted: tuple[str, str]) -> list[str]:
        return [str(d) for d in await store.import_channels(
            [(sub.email, list(wanted))], now, actor="import", dry_run=False,
            secret=lambda: "s" * 64)]

    lines = await csv(("slack", shown(ch.url)), ("teams", "https://teams.example.jp/x"))
    assert lines == [f"{sub.email}: channel added teams https://teams.example.jp/…jp/x"]
    lines = await csv(("teams", "https://teams.example.jp/x"))
    assert lines == [f"{sub.email}: channel removed slack {shown(ch.url)}"]
    assert [c.kind for c in await store.channels_of(sub.id)] == ["teams"]


async def test_a_rehearsal_sends_nothing_to_channels_either(tmp_path: Path) -> None:
    """`jpixd run --shadow` mails nobody; a channel's messages are kept as skipped
    ("shadow"), and nothing reaches the receiver."""
    with channel_receiver() as rx:
        async with site(tmp_path, shadow=True, channels=CHANNELS) as s:
            sub = await s.rt.store.create_subscriber(
                Subscriber(email="noc@isp.example.jp"), s.rt.clock())
            assert sub.id is not None
            await s.rt.store.add_channel(sub.id, "webhook", rx.url("hook"), "k" * 64,
                                         s.rt.clock(), actor="admin")
            loop = s.rt.loops["channels"]
            for _ in range(40):
                items, _ = await s.rt.store.list_channel_messages(limit=5)
                if items[0]["state"] != "queued":
                    break
                s.rt.wake("channels")
                await loop.next_round()
            assert (items[0]["state"], items[0]["reason"]) == ("skipped", "shadow")
    assert rx.arrivals == []


def test_an_error_never_carries_a_channel_url_whole() -> None:
    """What the loop records and logs of an error: each URL in it as shown, whatever
    form the client quoted it in."""
    from jpixd.channels.sender import _URL
    from jpixd.channels.urls import shown

    secret = "https://hooks.slack.com/services/T0AAAA/B0BBBB/s3cretSLACKabcd"
    text = f"InvalidURL: {secret}?x=1 and 'http://h.example.jp/a/s3cret%2Fzz'"
    cleaned = _URL.sub(lambda m: shown(m.group(0)), text)
    assert "s3cret" not in cleaned
    assert "https://hooks.slack.com/…?x=1" in cleaned and "http://h.example.jp/…2Fzz" in cleaned


async def test_a_reload_of_the_allowed_networks_makes_a_new_client(
        store: AnyStore, now: datetime, tmp_path: Path) -> None:
    """The client's resolver checks addresses against the networks it was made with: a
    reload that changes them closes it and the next round makes another. A new
    per_host_rate paces the hosts already known."""
    from jpixd.channels.post import session
    from jpixd.channels.sender import ChannelSender
    from jpixd.config import ChannelsConfig
    from jpixd.loop import Reloaded
    from jpixd.metrics import Metrics

    made: list[aiohttp.ClientSession] = []

    def client() -> aiohttp.ClientSession:
        made.append(session(()))
        return made[-1]

    metrics = Metrics(CollectorRegistry())
    loop = ChannelSender(store, ChannelsConfig(), metrics, lambda: now,
                         lease=timedelta(minutes=1), page_url=None, client=client)
    sub = await store.create_subscriber(Subscriber(email="noc@isp.example.jp"), now)
    assert sub.id is not None
    ch = await store.add_channel(sub.id, "slack", "https://10.0.0.1/a", "k" * 64, now,
                                 actor="admin")
    await loop.run_once()  # the test message: refused (a private address), one client
    assert len(made) == 1
    cfg = make_config(tmp_path, channels={"allowed_networks": ["10.0.0.0/8"],
                                          "per_host_rate": 2.0})
    loop.apply(Reloaded(cfg, frozenset({"channels"}), metrics))
    assert loop._buckets["host:10.0.0.1"].rate == 2.0  # the host's pace follows too
    await store.test_channel(sub.id, ch.id, now)
    await loop.run_once()
    assert len(made) == 2 and made[0].closed and not made[1].closed
    await made[1].close()


def test_every_channel_problem_the_rules_give_reads_in_japanese() -> None:
    """The pages say a problem by the code the rules give, not by matching English: each
    code the real rules produce has its Japanese."""
    from jpixd.channels import manage
    from jpixd.web.words import CHANNEL_PROBLEMS

    codes: set[str] = set()

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except manage.ChannelInvalid as exc:
            codes.update(exc.codes.values())
        else:
            raise AssertionError("no problem")

    for kind, url, http in (("discord", "https://example.jp/a", False),
                            ("slack", "", False), ("slack", "ftp://example.jp/a", False),
                            ("slack", "ftp://example.jp/a", True),
                            ("slack", "https:///a", False),
                            ("slack", "https://u:p@example.jp/a", False),
                            ("slack", "https://example.jp/" + "a" * 2000, False),
                            ("slack", "https://exa mple.jp/a", False),
                            ("slack", "https://[::1/a", False),
                            ("slack", "https://e.jp:0/a", False)):
        collect(partial(manage.checked, kind, url, allow_http=http))
    collect(lambda: manage.room_for_one(manage.MAX_PER_SUBSCRIBER))
    collect(lambda: manage.parse_cell("https://example.jp/a", allow_http=False))
    collect(lambda: manage.plan_import([], [("slack", "https://example.jp/…abcd")]))
    assert codes == set(CHANNEL_PROBLEMS), codes ^ set(CHANNEL_PROBLEMS)
