"""The channel loop: claim due channel messages under a lease, send each (at most
`per_host_rate` a second to one host, and one a second to one Slack webhook), record
what came of it (jpixd.channels.outcomes).

No message is lost: a claimed row stays queued under this loop's lease until its
outcome is written; a crash leaves it claimed, and it goes again (at start-up on SQLite,
when its lease runs out on a shared database) with the same idempotency key, so a
receiver can drop the repeat. Repeats are bounded by `concurrency`, the messages in
flight. A shutdown releases the claimed messages that have not gone.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

import aiohttp
import structlog

from jpixd.channels import payloads, signing
from jpixd.channels.outcomes import Step, next_step, skip_reason
from jpixd.channels.post import Outcome, post, session
from jpixd.channels.urls import UnsafeUrl, check_url, networks, shown
from jpixd.config import ChannelsConfig
from jpixd.leases import claimer_name, renewing
from jpixd.loop import Heartbeat, Loop, Reloaded
from jpixd.mail.bucket import TokenBucket
from jpixd.metrics import Metrics
from jpixd.model import Change, Clock, notice_from_json
from jpixd.records import ChannelMessage
from jpixd.store.contract import ChannelStore

log = structlog.get_logger("jpixd.channels")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
SLACK_RATE = 1.0  # Slack: one message a second per incoming webhook
CLAIM_PER_SLOT = 4  # messages claimed a round per slot of concurrency


def idempotency_key(msg: ChannelMessage) -> str:
    """The same on every attempt of one message, different for any other."""
    return f"jpixd-{msg.channel.id}-{msg.id}"


class ChannelSender(Loop):
    name = "channels"
    interval = 1.0  # idle: look for due messages every second

    def __init__(self, store: ChannelStore, cfg: ChannelsConfig, metrics: Metrics,
                 clock: Clock, *, lease: timedelta, page_url: Callable[[int], str] | None,
                 rng: random.Random | None = None,
                 client: Callable[[], aiohttp.ClientSession] | None = None) -> None:
        super().__init__()
        self.store = store
        self.cfg = cfg
        self.metrics = metrics
        self.clock = clock
        self.lease = lease.total_seconds()  # [cluster] lease
        self.page_url = page_url  # a notice's public page, when there are public pages
        self.rng = rng or random.Random()
        self.claimer = claimer_name(":ch")
        # Token buckets (the mail sender's kind), one a second per Slack webhook and
        # `per_host_rate` per host: a message waits its turn rather than be refused
        # with 429 by the receiver.
        self._buckets: dict[str, TokenBucket] = {}
        self._client_factory = client or (lambda: session(networks(self.cfg.allowed_networks)))
        self._client: aiohttp.ClientSession | None = None
        self._stale: list[aiohttp.ClientSession] = []  # replaced by a reload, to close
        self._recovered = False
        self._stopping = asyncio.Event()
        # `jpixd run --shadow` (the cut-over's rehearsal): nothing leaves, channels neither.
        self.shadow = False

    async def run(self, heartbeat: Heartbeat, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        try:
            await super().run(heartbeat, stopping)
        finally:
            if self._client is not None:
                self._stale.append(self._client)
                self._client = None
            await self._close_stale()

    async def _close_stale(self) -> None:
        while self._stale:
            await self._stale.pop().close()

    def apply(self, change: Reloaded) -> None:
        if change.touches("channels"):
            old = self.cfg.allowed_networks
            self.cfg = change.cfg.channels
            for key, bucket in self._buckets.items():
                if key.startswith("host:"):
                    bucket.set_rate(self.cfg.per_host_rate)
            if self.cfg.allowed_networks != old and self._client is not None:
                # The resolver checks against the networks it was made with: the next
                # round makes a new client and closes this one.
                self._stale.append(self._client)
                self._client = None
        if change.links is not None:
            self.page_url = change.links.notice

    def status(self) -> dict[str, object] | None:
        return {"per_host_rate": self.cfg.per_host_rate, "concurrency": self.cfg.concurrency}

    async def run_once(self) -> None:
        if not self._recovered:
            # SQLite: this process claims alone, so a claim left by a crash is its own.
            again = await self.store.recover_channel_messages()
            if again:
                log.warning("channel messages claimed before a crash will go again",
                            count=again)
            self._recovered = True
        now = self.clock()
        batch = await self.store.claim_channel_messages(
            now, self.cfg.concurrency * CLAIM_PER_SLOT, claimer=self.claimer,
            lease_until=now + timedelta(seconds=self.lease))
        await self._close_stale()
        if not batch:
            return
        if self._client is None:
            self._client = self._client_factory()
        # One channel's messages in order (a chat reads 回復 after 発生); channels side by
        # side, so a receiver that hangs holds up its own channel only, not its host's.
        by_channel: dict[int, list[ChannelMessage]] = defaultdict(list)
        for msg in batch:
            by_channel[msg.channel.id].append(msg)
        slots = asyncio.Semaphore(self.cfg.concurrency)
        try:
            async with renewing(partial(self.store.renew_channel_leases, self.claimer),
                                self.lease, self.clock, what="channel"):
                await asyncio.gather(*(self._channel(msgs, slots)
                                       for msgs in by_channel.values()))
        except Exception:
            # The round broke (the database failed mid-round): its claims are due again
            # now, sent by the next round, not after the lease runs out.
            n = await self.store.recover_channel_messages(self.claimer)
            log.error("channel round failed; its claimed messages are due again", requeued=n)
            raise

    async def _channel(self, msgs: list[ChannelMessage], slots: asyncio.Semaphore) -> None:
        """One channel's messages, in order, each after its host's (and webhook's) turn."""
        for msg in msgs:
            if self._stopping.is_set():
                await self.store.channel_message_release(msg.id)
                continue
            skip = "shadow" if self.shadow else skip_reason(msg.purpose, msg.channel.state)
            if skip is not None:
                await self.store.channel_message_skipped(msg, self.clock(), skip)
                self._count(msg, "skipped")
                continue
            host = urlsplit(msg.channel.url).hostname or ""
            await self._bucket(f"host:{host}", self.cfg.per_host_rate).acquire()
            if msg.channel.kind == "slack":
                await self._bucket(f"slack:{msg.channel.id}", SLACK_RATE).acquire()
            async with slots:
                await self._send(msg)
            self.progress()

    def _bucket(self, key: str, rate: float) -> TokenBucket:
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(rate, burst=1)
        return self._buckets[key]

    async def _send(self, msg: ChannelMessage) -> None:
        now = self.clock()
        key = idempotency_key(msg)
        try:
            check_url(msg.channel.url, allow_http=self.cfg.allow_http)
            body = self._body(msg, key, now)
        except UnsafeUrl as exc:
            outcome = Outcome("failed", error=f"the URL is not allowed: {exc}")
        except (ValueError, KeyError) as exc:  # a revision this release cannot read
            outcome = Outcome("failed", error=f"cannot build the message: {exc}")
        else:
            headers = (signing.headers(msg.channel.secret.encode(), body, key,
                                       int(now.timestamp()))
                       if msg.channel.kind == "webhook" else
                       {"Content-Type": "application/json; charset=utf-8",
                        "Idempotency-Key": key, "User-Agent": "jpixd/1"})
            assert self._client is not None
            outcome = await post(self._client, msg.channel.url, body, headers,
                                 allowed=networks(self.cfg.allowed_networks), now=now)
        step = next_step(outcome, purpose=msg.purpose, attempts=msg.attempts, cfg=self.cfg,
                         now=self.clock(), rng=self.rng)
        await self._record(msg, outcome, step)

    def _body(self, msg: ChannelMessage, key: str, now: datetime) -> bytes:
        if msg.purpose == "test":
            return json.dumps(payloads.verification(msg.channel.kind, key, now),
                              ensure_ascii=False).encode()
        if msg.content is None or msg.notice_id is None:
            raise ValueError("its notice revision is no longer kept")
        notice = notice_from_json(json.loads(msg.content))
        report = payloads.Report(
            notice_id=msg.notice_id, notice=notice, change=Change(msg.change or "update"),
            key=key, page_url=self.page_url(msg.notice_id) if self.page_url else None,
            now=now)
        return payloads.body(msg.channel.kind, report)

    async def _record(self, msg: ChannelMessage, outcome: Outcome, step: Step) -> None:
        now = self.clock()
        # An error may quote the URL (a secret), as given or as the client rewrote it:
        # every URL in it is written as shown, never whole.
        reason = _URL.sub(lambda m: shown(m.group(0)), step.reason or "")
        if step.action == "sent":
            await self.store.channel_message_sent(msg, now, outcome.status or 200)
        elif step.action == "gone":
            paused = await self.store.channel_gone(
                msg, now, outcome.status or 404, limit=self.cfg.pause_after_gone,
                retry_at=step.at)
            if paused:
                log.warning("channel paused: its URL answered 404/410 repeatedly",
                            channel=msg.channel.id, kind=msg.channel.kind,
                            url=shown(msg.channel.url))
        elif step.action == "retry" and step.at is not None:
            await self.store.channel_message_retry(msg, now, step.at, outcome.status, reason)
        else:
            await self.store.channel_message_failed(msg, now, outcome.status, reason)
        self._count(msg, step.action)
        log.info("channel message", channel=msg.channel.id, kind=msg.channel.kind,
                 message=msg.id, notice_id=msg.notice_id, purpose=msg.purpose,
                 result=step.action, status=outcome.status, attempts=msg.attempts,
                 error=reason or None)

    def _count(self, msg: ChannelMessage, result: str) -> None:
        self.metrics.channel_messages.labels(msg.channel.kind, result).inc()
