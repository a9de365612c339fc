"""The sender against real peers: aiosmtpd with STARTTLS and AUTH, moto's SES, and a
fault-injecting proxy in front of SES that answers with throttling errors."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp import web
from prometheus_client import CollectorRegistry

from jpixd.app import build_sender, ses_smtp_region
from jpixd.bounces.parse import parse
from jpixd.bounces.rules import decide
from jpixd.config import (
    BouncesConfig,
    ClusterConfig,
    RetentionConfig,
    Secret,
    SendingConfig,
    SesConfig,
    SmtpConfig,
)
from jpixd.fanout import Policy, planner
from jpixd.housekeeping import HousekeepingLoop
from jpixd.mail.bucket import TokenBucket
from jpixd.mail.outbound import DEFAULT_SMTP_RATE, Outbound, RatePolicy, SendingSwitch
from jpixd.mail.render import Renderer
from jpixd.mail.sender import Sender
from jpixd.mail.transports import Transport
from jpixd.mail.transports.file import FileTransport
from jpixd.mail.transports.ses import SesTransport
from jpixd.mail.transports.smtp import SmtpTransport
from jpixd.metrics import Metrics
from jpixd.model import JST, Change, DeliveryState, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.store import Store
from jpixd.store.base import to_db
from tests.awsproxy import forward, proxying
from tests.conftest import make_config
from tests.sesnotes import bounce, sns
from tests.smtpserver import PASSWORD, USER, SmtpPeer, smtp_server

T0 = datetime(2026, 11, 28, 15, 0, tzinfo=JST)
NOTICE = Notice(source="west", external_id="F1", carrier="west", kind=NoticeKind.FAILURE,
                status=NoticeStatus.OCCURRED, report_number=2, prefectures=("27",),
                title="大阪府の一部地域でフレッツ光ネクストがご利用しづらい状況について",
                body="原因を調査中です。", services=("フレッツ光ネクスト",),
                starts_at=datetime(2026, 11, 28, 14, 5, tzinfo=JST))
SENDING = SendingConfig(concurrency=4, max_attempts=5, backoff=timedelta(seconds=10),
                        backoff_max=timedelta(minutes=5))


@dataclass
class Rig:
    store: Store
    tmp: Path
    now: list[datetime] = field(default_factory=lambda: [T0])
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def sender(self, transport: Transport, *, rate: float | None = None,
               quota_from: SesTransport | None = None, auto: bool = False,
               sending: SendingConfig = SENDING) -> Sender:
        cfg = make_config(self.tmp, mail={"from": "noc-notice@example.jp",
                                          "from_name": "工事・故障情報",
                                          "list_unsubscribe": "https://n.example.jp/u"})
        metrics = Metrics(self.registry)
        outbound = Outbound(transport, TokenBucket(rate), metrics, RatePolicy(rate, auto),
                            SendingSwitch(self.store, metrics), quota_from=quota_from)
        return Sender(self.store, outbound, Renderer(cfg.mail, b"k" * 32), metrics,
                      lambda: self.now[0], sending, lease=ClusterConfig().lease,
                      rng=random.Random(1))

    async def notice_for(self, *subs: Subscriber) -> None:
        for s in subs:
            await self.store.create_subscriber(s, T0)
        await self.store.record_revision(NOTICE, revision="r1", change=Change.UPDATE, now=T0,
                                         planner=planner(NOTICE, Change.UPDATE, T0,
                                                         Policy(tz=JST)))

    async def drain(self, sender: Sender, rounds: int = 50) -> None:
        """Run the sender, moving the clock past each retry, until nothing is left."""
        for _ in range(rounds):
            await sender.run_once()
            counts = await self.store.delivery_counts()
            if counts[DeliveryState.PENDING] + counts[DeliveryState.RETRY] == 0:
                return
            nxt = await self.store.next_due_at()
            if nxt is not None and nxt > self.now[0]:
                self.now[0] = nxt
        raise AssertionError(f"not drained: {await self.store.delivery_counts()}")

    async def states(self) -> list[tuple[str, DeliveryState, str | None]]:
        items, _ = await self.store.list_deliveries()
        return [(d.email, d.state, d.reason) for d in items]


@pytest.fixture
def rig(store: Store, tmp_path: Path) -> Rig:
    return Rig(store, tmp_path)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpPeer]:
    with smtp_server(str(tmp_path)) as peer:
        yield peer


def smtp_transport(peer: SmtpPeer, pool_size: int = 2) -> SmtpTransport:
    cfg = SmtpConfig(host=peer.host, port=peer.port, starttls=True, username=USER,
                     password=Secret("env:T", PASSWORD), pool_size=pool_size)
    return SmtpTransport(cfg, tls_context=peer.client_tls)


async def test_smtp_with_starttls_and_auth_in_both_charsets(rig: Rig, smtp: SmtpPeer) -> None:
    await rig.notice_for(Subscriber(email="jis@isp.example.jp", name="担当 太郎",
                                    organization="株式会社例", carriers=("west",)),
                         Subscriber(email="utf8@isp.example.jp", name="髙橋 ①",
                                    carriers=("west",), charset="utf-8"))
    transport = smtp_transport(smtp, pool_size=1)
    try:
        await rig.drain(rig.sender(transport))
    finally:
        await transport.close()
    assert [s for _, s, _ in await rig.states()] == [DeliveryState.SENT] * 2
    # One pooled connection: one STARTTLS + AUTH, both messages over it.
    assert smtp.handler.logins == [USER] and smtp.handler.tls_sessions == 2
    by_rcpt = {r.recipients[0]: r for r in smtp.handler.received}
    jis = by_rcpt["jis@isp.example.jp"]
    assert b"charset=\"iso-2022-jp\"" in jis.data and jis.data.isascii()
    for received in by_rcpt.values():
        msg = received.message()
        assert msg["Subject"] == f"【故障】【第2報】{NOTICE.title}"
        body = msg.get_content()
        assert "原因を調査中です。" in body and "フレッツ光ネクスト" in body
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert by_rcpt["utf8@isp.example.jp"].message().get_content_charset() == "utf-8"
    assert "髙橋 ①" in str(by_rcpt["utf8@isp.example.jp"].message()["To"])
    assert "担当 太郎" in jis.message().get_content()


async def test_454_three_times_then_250_is_sent_once(rig: Rig, smtp: SmtpPeer) -> None:
    await rig.notice_for(Subscriber(email="a@isp.example.jp", carriers=("west",)))
    smtp.handler.answers = ["454 Throttling failure: Maximum sending rate exceeded."] * 3
    transport = smtp_transport(smtp)
    sender = rig.sender(transport, rate=50)
    try:
        await rig.drain(sender)
    finally:
        await transport.close()
    assert len(smtp.handler.received) == 1
    [(_, state, _)] = await rig.states()
    assert state == DeliveryState.SENT
    [d] = (await rig.store.list_deliveries())[0]
    assert d.attempts == 4
    rate = sender.outbound.bucket.rate
    assert rate is not None and rate < 50  # it slowed down
    assert rig.registry.get_sample_value("jpixd_email_send_failures_total",
                                         {"reason": "throttled"}) == 3


async def test_550_fails_with_the_reason(rig: Rig, smtp: SmtpPeer) -> None:
    await rig.notice_for(Subscriber(email="gone@isp.example.jp", carriers=("west",)))
    smtp.handler.answers = ["550 5.1.1 User unknown"]
    transport = smtp_transport(smtp)
    try:
        await rig.drain(rig.sender(transport))
    finally:
        await transport.close()
    [(_, state, reason)] = await rig.states()
    assert state == DeliveryState.FAILED and reason == "SMTP 550 5.1.1 User unknown"
    assert smtp.handler.received == []


async def test_suppressed_and_paused_are_not_sent(rig: Rig, smtp: SmtpPeer) -> None:
    await rig.notice_for(Subscriber(email="ok@isp.example.jp", carriers=("west",)),
                         Subscriber(email="bounced@isp.example.jp", carriers=("west",)))
    await rig.store.set_sending(paused=True, reason="test", actor="admin", now=T0)
    transport = smtp_transport(smtp)
    sender = rig.sender(transport)
    try:
        await sender.run_once()
        assert (await rig.store.delivery_counts())[DeliveryState.PENDING] == 2
        # Suppressed after the fan-out, before the send: a hard bounce recorded as the
        # bounce consumer records it. The fan-out's rows for the address are marked at
        # once; the sender must not send them either way.
        [event], _ = parse(sns(bounce(["bounced@isp.example.jp"])))
        await rig.store.record_events([event], T0, soft_window=timedelta(days=7),
                                      decide=lambda e, n, own: decide(e, n, BouncesConfig(),
                                                                      self_service=own))
        await rig.store.set_sending(paused=False, reason=None, actor="admin", now=T0)
        await rig.drain(sender)
    finally:
        await transport.close()
    assert sorted(await rig.states()) == [
        ("bounced@isp.example.jp", DeliveryState.SUPPRESSED,
         "address suppressed: permanent bounce (Permanent/General)"),
        ("ok@isp.example.jp", DeliveryState.SENT, None)]
    assert [r.recipients for r in smtp.handler.received] == [["ok@isp.example.jp"]]


async def test_a_suppression_the_outbox_missed_is_caught_at_claim(rig: Rig,
                                                                  smtp: SmtpPeer) -> None:
    """Defence in depth: a suppression written by a path that did not mark the outbox
    (a person fixing the database by hand) still stops the send, because the claim reads
    the suppression itself. Raw SQL on purpose: it is that foreign write."""
    await rig.notice_for(Subscriber(email="raw@isp.example.jp", carriers=("west",)))
    # Times as each database keeps them: SQLite's text, PostgreSQL's timestamptz.
    at: object = T0 if getattr(rig.store, "url", None) else to_db(T0)
    await rig.store._write("INSERT INTO suppressions (email, reason, first_event_at, "
                           "last_event_at, created_at) VALUES (?, 'manual', ?, ?, ?)",
                           ("raw@isp.example.jp", at, at, at))
    transport = smtp_transport(smtp)
    try:
        await rig.drain(rig.sender(transport))
    finally:
        await transport.close()
    assert await rig.states() == [
        ("raw@isp.example.jp", DeliveryState.SUPPRESSED, "address is suppressed")]
    assert smtp.handler.received == []


# ---------------------------------------------------------------- SES (moto)


async def verified(moto_url: str, address: str) -> None:
    async with get_session().create_client("ses", region_name="ap-northeast-1",
                                           endpoint_url=moto_url) as ses:
        await ses.verify_email_identity(EmailAddress=address)


@pytest.fixture
async def ses_rig(rig: Rig, moto_url: str) -> AsyncIterator[Rig]:
    await verified(moto_url, "noc-notice@example.jp")
    yield rig


@asynccontextmanager
async def ses_transport(endpoint_url: str) -> AsyncIterator[SesTransport]:
    """An SES transport against moto (or the fault proxy in front of it), closed after."""
    transport = SesTransport(SesConfig(endpoint_url=endpoint_url))
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


async def test_ses_sends_records_ids_and_reads_the_rate(ses_rig: Rig, moto_url: str) -> None:
    rig = ses_rig
    await rig.notice_for(*(Subscriber(email=f"u{i}@isp.example.jp", carriers=("west",))
                           for i in range(3)))
    async with ses_transport(moto_url) as transport:
        sender = rig.sender(transport, rate=1.0, quota_from=transport, auto=True)
        await rig.drain(sender)
        quota = await transport.quota()
    items, _ = await rig.store.list_deliveries()
    assert all(d.state == DeliveryState.SENT and d.ses_message_id for d in items)
    assert len({d.ses_message_id for d in items}) == 3
    assert sender.outbound.bucket.target == pytest.approx(quota.max_rate * 0.9)
    assert rig.registry.get_sample_value("jpixd_emails_sent_total", {"transport": "ses"}) == 3


@dataclass
class Proxy:
    """Forwards to moto; the first `throttle` SendEmail calls get SES's throttling error,
    or `paused` ones get SendingPausedException."""

    target: str
    throttle: int = 0
    paused: int = 0
    refusals: list[tuple[int, str, str]] = field(default_factory=list)  # status, code, text
    sends: int = 0
    session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("/outbound-emails"):
            self.sends += 1
            if self.throttle > 0:
                self.throttle -= 1
                return web.json_response({"message": "Maximum sending rate exceeded."},
                                         status=429, headers={
                                             "x-amzn-ErrorType": "TooManyRequestsException"})
            if self.paused > 0:
                self.paused -= 1
                return web.json_response({"message": "Sending is paused for this account."},
                                         status=400, headers={
                                             "x-amzn-ErrorType": "SendingPausedException"})
            if self.refusals:
                status, code, text = self.refusals.pop(0)
                return web.json_response({"message": text}, status=status,
                                         headers={"x-amzn-ErrorType": code})
        assert self.session is not None
        return await forward(self.session, self.target, request, body)


@pytest.fixture
async def proxy(moto_url: str) -> AsyncIterator[tuple[Proxy, str]]:
    p = Proxy(moto_url)
    async with proxying(p) as url:
        yield p, url


async def test_throttling_loses_nothing_and_backs_off(ses_rig: Rig,
                                                      proxy: tuple[Proxy, str]) -> None:
    rig = ses_rig
    p, url = proxy
    p.throttle = 6
    await rig.notice_for(*(Subscriber(email=f"t{i}@isp.example.jp", carriers=("west",))
                           for i in range(8)))
    async with ses_transport(url) as transport:
        sender = rig.sender(transport, rate=20.0)
        await rig.drain(sender)
    items, _ = await rig.store.list_deliveries()
    assert [d.state for d in items] == [DeliveryState.SENT] * 8  # nothing lost
    assert p.sends == 8 + 6
    rate = sender.outbound.bucket.rate
    assert rate is not None and rate < 20.0
    assert rig.registry.get_sample_value("jpixd_email_send_failures_total",
                                         {"reason": "throttled"}) == 6


async def test_a_paused_account_pauses_sending(ses_rig: Rig, proxy: tuple[Proxy, str]) -> None:
    rig = ses_rig
    p, url = proxy
    p.paused = 1
    await rig.notice_for(Subscriber(email="p@isp.example.jp", carriers=("west",)))
    async with ses_transport(url) as transport:
        sender = rig.sender(transport, rate=20.0)
        await sender.run_once()
        state = await rig.store.sending_state()
        assert state.paused and state.actor == "ses" and "SendingPaused" in (state.reason or "")
        [d] = (await rig.store.list_deliveries())[0]
        assert d.state == DeliveryState.RETRY and d.attempts == 0  # released, not spent
        await sender.run_once()
        assert p.sends == 1  # nothing more while paused
        await rig.store.set_sending(paused=False, reason=None, actor="admin", now=T0)
        await rig.drain(sender)
    assert [s for _, s, _ in await rig.states()] == [DeliveryState.SENT]




async def test_a_slow_throttled_batch_keeps_the_sender_alive(rig: Rig, smtp: SmtpPeer) -> None:
    """At the floor rate a claimed batch takes minutes; each send must count as progress,
    or readiness and the systemd watchdog would take a working sender for a wedged one."""
    from jpixd.loop import Heartbeat

    clock = [0.0]

    async def virtual_sleep(seconds: float) -> None:
        clock[0] += seconds

    await rig.notice_for(*(Subscriber(email=f"s{i}@isp.example.jp", carriers=("west",))
                           for i in range(8)))
    transport = smtp_transport(smtp)
    sender = rig.sender(transport)
    sender.outbound.bucket = TokenBucket(0.2, 1, monotonic=lambda: clock[0],
                                         sleep=virtual_sleep)
    sender.heartbeat = Heartbeat(lambda: clock[0])
    try:
        await sender.run_once()
    finally:
        await transport.close()
    # At 0.2/s the sender claims only `concurrency` (4) rows: 15 s of (virtual) time …
    assert clock[0] == pytest.approx(15.0)
    # … and the heartbeat beat with each send, not only when the round was over.
    assert sender.heartbeat.age() < 5.1


@pytest.mark.parametrize("answer", [
    "554 Message rejected: Email address is not verified. The following identities failed "
    "the check in region AP-NORTHEAST-1: noc@example.jp",
    "535 Authentication Credentials Invalid"])
async def test_account_level_smtp_refusals_pause_instead_of_failing_mail(
        rig: Rig, smtp: SmtpPeer, answer: str) -> None:
    """Security probe M5: SES-SMTP's 'not verified' at MAIL FROM, or a login refused after
    a password rotation, failed every delivery; they pause the sender instead."""
    await rig.notice_for(Subscriber(email="a@isp.example.jp", carriers=("west",)),
                         Subscriber(email="b@isp.example.jp", carriers=("west",)))
    smtp.handler.mail_answers = [answer] * 5
    cfg = SmtpConfig(host=smtp.host, port=smtp.port, starttls=True, username=USER,
                     password=Secret("env:T", PASSWORD if answer.startswith("554") else "x"),
                     pool_size=1)
    transport = SmtpTransport(cfg, tls_context=smtp.client_tls)
    try:
        await rig.sender(transport).run_once()
    finally:
        await transport.close()
    state = await rig.store.sending_state()
    assert state.paused and state.actor == "smtp" and answer[:3] in (state.reason or "")
    # Nothing failed: the mail waits for the resume (the one in hand was released).
    states = [s for _, s, _ in await rig.states()]
    assert len(states) == 2 and set(states) <= {DeliveryState.RETRY, DeliveryState.PENDING}
    assert smtp.handler.received == []


class FailingOnce:
    """The store, but its first group commit of sent mail fails (a disk I/O error)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def mark_sent_many(self, rows: Any, now: datetime) -> None:
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        await self._store.mark_sent_many(rows, now)


async def test_a_crashed_round_strands_nothing(rig: Rig, smtp: SmtpPeer) -> None:
    """Issue 13: a sender round that broke left its rows in `sending` until the process
    restarted. Now they are due again at once and the next round sends them."""
    await rig.notice_for(*(Subscriber(email=f"u{i}@isp.example.jp", carriers=("west",))
                           for i in range(6)))
    transport = smtp_transport(smtp)
    sender = rig.sender(transport)
    sender.store = cast(Store, FailingOnce(rig.store))
    sender.recorder.store = sender.store
    try:
        with pytest.raises(ExceptionGroup):
            await sender.run_once()
        assert (await rig.store.delivery_counts())[DeliveryState.SENDING] == 0
        await rig.drain(sender)
    finally:
        await transport.close()
    states = [s for _, s, _ in await rig.states()]
    assert states == [DeliveryState.SENT] * 6
    # Sent once each, but for the mail whose record failed (at-least-once, bounded).
    assert 6 <= len(smtp.handler.received) <= 6 + SENDING.concurrency


class RenderCounting(Renderer):
    """The renderer, counting the mails it has rendered."""

    rendered = 0

    def render(self, **kwargs: Any) -> Any:
        self.rendered += 1
        return super().render(**kwargs)


class WritesWatched:
    """The store, noting how many mails were rendered when each group's "sent" write
    started."""

    def __init__(self, store: Store, renderer: RenderCounting) -> None:
        self._store, self._renderer = store, renderer
        self.rendered_at_write: list[int] = []
        self.rows: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def mark_sent_many(self, rows: Any, now: datetime) -> None:
        self.rendered_at_write.append(self._renderer.rendered)
        self.rows.append(len(rows))
        await self._store.mark_sent_many(rows, now)


async def test_a_groups_write_overlaps_the_next_mails_rendering(rig: Rig,
                                                                tmp_path: Path) -> None:
    """A transport that never yields (the file): the group's "sent" write starts once
    each worker has sent its mail, before any of them renders its next one, so that the
    write's round trip overlaps that work. Rendering first made every worker wait for the
    write and the write for every rendering (PostgreSQL on one host: 4,000 against 5,300
    mails/s, `bench postgres:sender`)."""
    await rig.notice_for(*(Subscriber(email=f"u{i}@isp.example.jp", carriers=("west",))
                           for i in range(12)))
    sender = rig.sender(FileTransport(tmp_path / "out"))
    renderer = RenderCounting(make_config(tmp_path, mail={"from": "n@example.jp"}).mail,
                              b"k" * 32)
    watched = WritesWatched(rig.store, renderer)
    sender.renderer = renderer
    sender.store = sender.recorder.store = cast(Store, watched)
    await sender.run_once()
    states = [s for _, s, _ in await rig.states()]
    assert states == [DeliveryState.SENT] * 12
    # Concurrency 4: three groups of four, each written when only its own four (and the
    # groups' before it) had been rendered.
    assert watched.rows == [4, 4, 4]
    assert watched.rendered_at_write == [4, 8, 12]


async def test_mail_retrying_for_an_hour_looks_an_hour_old(rig: Rig, smtp: SmtpPeer) -> None:
    """Issue 13: the stalled-mail gauge restarted at every retry."""
    await rig.notice_for(Subscriber(email="slow@isp.example.jp", carriers=("west",)))
    smtp.handler.answers = ["451 4.3.0 try again later"] * 100
    transport = smtp_transport(smtp)
    sender = rig.sender(transport, sending=SendingConfig(
        concurrency=1, max_attempts=100, backoff=timedelta(seconds=10),
        backoff_max=timedelta(minutes=5)))
    metrics = Metrics(CollectorRegistry())
    housekeeping = HousekeepingLoop(rig.store, metrics, lambda: rig.now[0],
                                    SendingSwitch(rig.store, metrics), bounces=BouncesConfig(),
                                    retention=RetentionConfig())
    try:
        while rig.now[0] < T0 + timedelta(hours=1):
            await sender.run_once()
            nxt = await rig.store.next_due_at()
            assert nxt is not None and nxt > rig.now[0]
            rig.now[0] = nxt
    finally:
        await transport.close()
    await housekeeping.run_once()
    age = metrics.registry.get_sample_value("jpixd_outbox_oldest_pending_age_seconds")
    assert age is not None and age >= 3600
    [(_, state, _)] = await rig.states()
    assert state == DeliveryState.RETRY


async def test_ses_smtp_message_ids_are_recorded(rig: Rig, smtp: SmtpPeer) -> None:
    """Issue 13: the id in SES-SMTP's "250 Ok <id>" was thrown away, so bounces could not
    be tied to their delivery (Backlog issues said 配信: 不明)."""
    await rig.notice_for(Subscriber(email="a@isp.example.jp", carriers=("west",)))
    ses_id = "0101018f0000aaaa-11112222-3333-4444-5555-666677778888-000000"
    smtp.handler.answers = [f"250 Ok {ses_id}"]
    transport = smtp_transport(smtp)
    try:
        await rig.drain(rig.sender(transport))
    finally:
        await transport.close()
    [d], _ = await rig.store.list_deliveries()
    assert d.state == DeliveryState.SENT and d.ses_message_id == ses_id


def test_one_rate_for_every_transport(tmp_path: Path) -> None:
    """Issue 13: with "auto", SMTP (SES's SMTP interface too) was unlimited."""
    assert ses_smtp_region("email-smtp.ap-northeast-1.amazonaws.com") == "ap-northeast-1"
    assert ses_smtp_region("smtp.example.jp") is None
    cfg = make_config(tmp_path, mail={"from": "n@example.jp", "transport": "smtp",
                                      "smtp": {"host": "smtp.example.jp"}})
    sender = build_sender(cfg, cast(Store, None), SmtpTransport(cfg.mail.smtp), Metrics(),
                          lambda: T0, "t" * 32)
    out = sender.outbound
    assert out.bucket.rate == DEFAULT_SMTP_RATE and not out.policy.follows_quota


async def test_a_mail_our_code_cannot_render_is_failed_and_the_rest_are_sent(
        rig: Rig, smtp: SmtpPeer) -> None:
    """Issue 12's crash barrier: a delivery that makes rendering raise is failed with its
    incident id and quarantined; the round and its other mail go on."""
    templates = rig.tmp / "templates"
    templates.mkdir()
    (templates / "body.txt.j2").write_text(
        "{% if subscriber.name == 'boom' %}{{ 1 // 0 }}{% endif %}{{ notice.title }}\n",
        encoding="utf-8")
    await rig.notice_for(Subscriber(email="boom@isp.example.jp", name="boom",
                                    carriers=("west",)),
                         Subscriber(email="fine@isp.example.jp", carriers=("west",)))
    cfg = make_config(rig.tmp, mail={"from": "n@example.jp", "templates_dir": str(templates)})
    transport = smtp_transport(smtp)
    sender = rig.sender(transport)
    sender.renderer = Renderer(cfg.mail, b"k" * 32)
    try:
        await rig.drain(sender)
    finally:
        await transport.close()
    states = {email: (state, reason) for email, state, reason in await rig.states()}
    assert states["fine@isp.example.jp"][0] == DeliveryState.SENT
    state, reason = states["boom@isp.example.jp"]
    assert state == DeliveryState.FAILED and "ZeroDivisionError" in (reason or "")
    assert "incident" in (reason or "")
    [q] = await rig.store.quarantined("delivery")
    assert str(q["ref"]).startswith("delivery:")


@pytest.mark.parametrize(("status", "code", "text"), [
    # SES's sandbox, for a recipient nobody verified (what a real notice hits first).
    (400, "MessageRejected", "Email address is not verified. The following identities "
     "failed the check in region AP-NORTHEAST-1: noc@isp.example.jp"),
    # The sending identity itself not (or no longer) verified.
    (400, "MessageRejected", "Email address is not verified. The following identities "
     "failed the check in region AP-NORTHEAST-1: noc-notice@example.jp"),
    # The role may not send on this identity or configuration set.
    (403, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/jpixd is "
     "not authorized to perform: ses:SendEmail on resource: identity/example.jp"),
    # The configuration set named in [mail.ses] is not there.
    (404, "NotFoundException", "Configuration set <jpixd> does not exist."),
])
async def test_a_refusal_of_the_account_or_identity_pauses_and_fails_no_delivery(
        ses_rig: Rig, proxy: tuple[Proxy, str], status: int, code: str, text: str) -> None:
    """Issue 22: these were PERMANENT, and a notice's whole fan-out was marked failed."""
    rig = ses_rig
    p, url = proxy
    p.refusals = [(status, code, text)]
    await rig.notice_for(*(Subscriber(email=f"r{i}@isp.example.jp", carriers=("west",))
                           for i in range(3)))
    async with ses_transport(url) as transport:
        sender = rig.sender(transport, rate=20.0)
        await sender.run_once()
        state = await rig.store.sending_state()
        assert state.paused and state.actor == "ses" and code in (state.reason or "")
        assert DeliveryState.FAILED not in [s for _, s, _ in await rig.states()]
        await rig.store.set_sending(paused=False, reason=None, actor="admin", now=T0)
        await rig.drain(sender)
    assert [s for _, s, _ in await rig.states()] == [DeliveryState.SENT] * 3


async def test_a_bad_address_still_fails_only_its_own_delivery(
        ses_rig: Rig, proxy: tuple[Proxy, str]) -> None:
    rig = ses_rig
    p, url = proxy
    p.refusals = [(400, "MessageRejected", "Illegal address")]
    await rig.notice_for(Subscriber(email="bad@isp.example.jp", carriers=("west",)))
    async with ses_transport(url) as transport:
        await rig.drain(rig.sender(transport, rate=20.0))
    assert not (await rig.store.sending_state()).paused
    assert [s for _, s, _ in await rig.states()] == [DeliveryState.FAILED]
