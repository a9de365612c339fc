"""The sender loop: claim due deliveries (failures first, then oldest), re-check
suppression, take a token, send with bounded concurrency, record the outcome.

No delivery is lost: a claimed row is `sending` until its outcome is committed; a crash
leaves it `sending` and start-up sends it again (at-least-once, duplicates bounded by
`concurrency`, the sends in flight). A pause (admin or guard) or a shutdown releases
claimed rows that have not gone yet.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

import structlog

from jpixd import logs
from jpixd.barrier import contain, describe
from jpixd.config import SendingConfig
from jpixd.leases import claimer_name, renewing
from jpixd.loop import Heartbeat, Loop, Reloaded
from jpixd.mail import selfservice
from jpixd.mail.outbound import Outbound, rate_policy
from jpixd.mail.render import Rendered, Renderer
from jpixd.mail.transports import Failure, SendError
from jpixd.metrics import Metrics
from jpixd.model import Claimed, Clock, DeliveryState, SubscriberStatus, notice_to_json
from jpixd.records import SelfMail
from jpixd.retry import Backoff
from jpixd.store.contract import SenderStore

log = structlog.get_logger("jpixd.sender")

# Self-service mails claimed a round: few (their limits keep them so), before notice mail.
SELF_MAIL_BATCH = 20


class SentRecorder:
    """Group commit of "sent" outcomes: rows that finish together are written in one trip
    to the database. `submit` returns the row's future; a worker awaits it before its
    next send (not before rendering its next mail, which overlaps the write), so mail
    that has gone out but is not yet recorded never exceeds `sending.concurrency` (the
    crash-duplicate bound). The write happens whether or not anyone still waits.
    """

    def __init__(self, store: SenderStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._pending: list[tuple[tuple[int, str, str, str | None], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, delivery_id: int, transport: str, message_id: str,
                     ses_message_id: str | None) -> asyncio.Future[None]:
        """Queue the row; its future. Yields once, so that a write this starts begins
        before the caller goes on to render its next mail: with a transport that does not
        yield (the file), every worker would otherwise render first and the write wait
        for all of them, its round trip then overlapping nothing (bench: PostgreSQL on one
        host 4,000 → 5,300 mails/s, SQLite 5,400 → 6,500)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(((delivery_id, transport, message_id, ses_message_id), done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="record-sent")
        await asyncio.sleep(0)
        return done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.mark_sent_many([row for row, _ in batch], self.clock())
            except Exception as exc:  # the waiters see the database's error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


class RoundFailed(Exception):
    """The round cannot go on: a mail that went out could not be recorded. Not any one
    delivery's fault, so not for the crash barrier."""


def retry_delay(attempts: int, cfg: SendingConfig, rng: random.Random) -> timedelta:
    """The wait before a mail's next attempt (jpixd.retry: from `backoff` doubling to
    `backoff_max`)."""
    backoff = Backoff(cfg.backoff.total_seconds(), cfg.backoff_max.total_seconds())
    return timedelta(seconds=backoff.delay(max(attempts, 1), rng))


class Sender(Loop):
    name = "sender"
    interval = 1.0  # idle: look for due mail (and a pause) every second

    def __init__(self, store: SenderStore, outbound: Outbound, renderer: Renderer,
                 metrics: Metrics, clock: Clock, cfg: SendingConfig, *,
                 lease: timedelta, rng: random.Random | None = None) -> None:
        super().__init__()
        self.store = store
        self.outbound = outbound  # the transport, the rate, the quota: the one way out
        self.renderer = renderer
        self.metrics = metrics
        self.clock = clock
        self.cfg = cfg
        self.rng = rng or random.Random()
        self._recovered = False
        self._busy = False
        self._stopping = asyncio.Event()
        self.recorder = SentRecorder(store, clock)
        # `jpixd run --shadow`: every mail rendered and kept, none sent (the cut-over).
        self.shadow = False
        # Claimed rows carry this sender's name and a lease, renewed every third of it
        # while the round runs; a row whose lease expired is anyone's to send again.
        self.lease = lease.total_seconds()  # [cluster] lease
        self.claimer = claimer_name()
        self.renewed = asyncio.Event()  # set after each renewal (tests wait on it)
        # Several hosts: tells the others of a throttle (they share the account's rate).
        self.throttled: Callable[[], Awaitable[None]] | None = None

    async def run(self, heartbeat: Heartbeat, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        await super().run(heartbeat, stopping)

    def reconfigure(self, cfg: SendingConfig, renderer: Renderer) -> None:
        """New sending settings, templates and headers (the rate is the outbound's)."""
        self.cfg, self.renderer = cfg, renderer
        self.wake.set()

    def apply(self, change: Reloaded) -> None:
        if not change.touches("sending", "mail", "timezone", "web"):
            return
        cfg = change.cfg
        self.reconfigure(cfg.sending, Renderer(cfg.mail, self.renderer.unsubscribe_key,
                                               cfg.tz, change.links))
        # The same rule as at start (issue 24: a reload once dropped the SMTP rate).
        out = self.outbound
        out.apply(rate_policy(cfg.mail.ses, out.name, out.quota_from is not None))

    def status(self) -> dict[str, object] | None:
        return self.outbound.status()

    def reset(self) -> None:
        # Claimed rows are recovered again, the pause and the quota read afresh.
        self._recovered, self._busy = False, False
        self.outbound.switch.changed_elsewhere()
        self.outbound.read_quota_again()

    def next_delay(self) -> float:
        return 0.0 if self._busy else self.interval

    # ------------------------------------------------------------------ one round

    async def run_once(self) -> None:
        self._busy = False
        now = self.clock()
        if not self._recovered:
            n = await self.store.recover_sending(now)
            self._recovered = True
            if n:
                log.warning("resending mail left in flight by a crash", count=n)
        await self.outbound.refresh_quota()
        self.outbound.switch.changed_elsewhere()  # a fresh read before every claim
        await self._self_service(now)
        if await self._paused() or self.outbound.quota_exhausted():
            return
        limit = self._claim_size()
        claimed, taken_over = await self.store.claim(
            now, limit, claimer=self.claimer, lease_until=now + timedelta(seconds=self.lease))
        if taken_over:
            log.warning("sending again mail whose sender's lease expired (it died mid-send)",
                        count=taken_over)
        if not claimed:
            return
        self._busy = len(claimed) == limit
        # A fixed pool of `concurrency` workers over the claimed rows (cheaper than a task
        # and a semaphore wait per mail, and the same bound on sends in flight).
        queue = collections.deque(claimed)

        async def worker() -> None:
            unrecorded: asyncio.Future[None] | None = None  # this worker's last sent mail
            try:
                while queue:
                    claimed = queue.popleft()
                    try:
                        unrecorded = await self._deliver(claimed, unrecorded)
                    except RoundFailed:
                        raise
                    except Exception as exc:  # the crash barrier: this mail, not the round
                        await self._delivery_crashed(claimed, exc)
            finally:
                if unrecorded is not None:
                    await asyncio.shield(unrecorded)

        try:
            async with renewing(partial(self.store.renew_leases, self.claimer), self.lease,
                                self.clock, what="sending", renewed=self.renewed), \
                    asyncio.TaskGroup() as tg:
                for i in range(min(self.cfg.concurrency, len(claimed))):
                    tg.create_task(worker(), name=f"sender-worker-{i}")
        except Exception:
            # The round broke (the store could not record a sent mail, …): the rows it
            # claimed are due again now, sent by the next round of this process; mail
            # that went out unrecorded goes twice, within the in-flight bound.
            n = await self.store.recover_sending(self.clock(), claimer=self.claimer)
            log.error("sender round failed; its claimed mail is due again", requeued=n)
            raise

    def _claim_size(self) -> int:
        # About two seconds of work at the current rate: a pause or shutdown then has
        # little claimed work to release, and a fast transport is not starved.
        rate = self.outbound.bucket.rate
        per_round = self.cfg.claim_batch if rate is None else int(rate * 2)
        return max(self.cfg.concurrency, min(self.cfg.claim_batch, per_round))

    # ------------------------------------------------------------------ self-service mail

    async def _self_service(self, now: datetime) -> None:
        """Self-service mail first (somebody waits at a page for it), from its rows, on
        the same rate as everything else; at most a few a round (its own limits keep it
        rare). Its rows are the outbox's: a crash leaves them `sending`, and they go
        again as any delivery does (`recover_sending`, an expired lease)."""
        mails = await self.store.claim_self_mails(
            now, SELF_MAIL_BATCH, claimer=self.claimer,
            lease_until=now + timedelta(seconds=self.lease))
        for m in mails:
            with logs.bound(self_mail_id=m.id, kind=m.kind):
                try:
                    await self._self_mail(m)
                except Exception as exc:  # the crash barrier: this mail, not the round
                    incident = await contain(self.store, self.metrics, exc, unit="delivery",
                                             origin="self_mail", ref=f"self_mail:{m.id}",
                                             payload=m.kind, now=self.clock())
                    await self.store.mark_final(
                        m.id, self.clock(), DeliveryState.FAILED,
                        f"internal error: {describe(exc)} (incident {incident})")
                    self._count_self(m, "failed")
            self.progress()

    async def _self_mail(self, m: SelfMail) -> None:
        now = self.clock()
        sub = await self.store.get_subscriber(m.subscriber_id)
        why = ("shadow" if self.shadow else "paused" if await self._paused() else
               "gone" if sub is None else
               "suppressed" if await self.store.is_suppressed(m.email) else None)
        if why is not None or sub is None:
            await self.store.mark_final(m.id, now, DeliveryState.SKIPPED, why or "gone")
            self._count_self(m, why or "gone")
            log.warning("self-service mail not sent", subscriber_id=m.subscriber_id,
                        reason=why)
            return
        if self._stopping.is_set():
            await self.store.release(m.id, now)
            return
        mail = selfservice.compose(self.renderer, m.kind, replace(sub, email=m.email), now)
        await self.outbound.acquire()
        try:
            provider_id = await self.outbound.send(mail)
        except SendError as err:
            await self._self_mail_failed(m, err)
            return
        await self.store.mark_sent_many(
            [(m.id, self.outbound.name, mail.message_id, provider_id)], self.clock())
        self._count_self(m, "sent")
        log.info("self-service mail sent", subscriber_id=m.subscriber_id,
                 ses_message_id=provider_id, attempt=m.attempts)

    async def _self_mail_failed(self, m: SelfMail, err: SendError) -> None:
        now = self.clock()
        if err.failure == Failure.PAUSED:
            await self._pause_account(err, now)
            await self.store.release(m.id, now)
            return
        if err.failure == Failure.THROTTLED:
            await self._throttled()
        if err.failure == Failure.PERMANENT or m.attempts >= self.cfg.max_attempts:
            reason = err.reason if err.failure == Failure.PERMANENT else \
                f"gave up after {m.attempts} attempts: {err.reason}"
            await self.store.mark_final(m.id, now, DeliveryState.FAILED, reason)
            self._count_self(m, "failed")
            log.warning("self-service mail failed", subscriber_id=m.subscriber_id,
                        reason=reason)
            return
        next_at = now + retry_delay(m.attempts, self.cfg, self.rng)
        await self.store.mark_retry(m.id, now, next_at, err.reason)
        log.info("self-service mail will be retried", reason=err.reason, attempt=m.attempts,
                 retry_at=next_at.isoformat())

    def _count_self(self, m: SelfMail, result: str) -> None:
        self.metrics.web_mails.labels(m.kind, result).inc()

    # ------------------------------------------------------------------ one delivery

    async def _deliver(self, c: Claimed, unrecorded: asyncio.Future[None] | None
                       ) -> asyncio.Future[None] | None:
        """Send one claimed delivery; return the future of its "sent" row (or, when
        nothing was sent, the previous one's, still to be awaited)."""
        d = c.delivery
        with logs.bound(delivery_id=d.id, notice_id=c.notice_id):
            if await self._skip_if_unwanted(c):
                return unrecorded
            if self._stopping.is_set() or await self._paused():
                await self.store.release(d.id, self.clock())
                return unrecorded
            mail = self.renderer.render(delivery_id=d.id, notice_id=c.notice_id,
                                        notice=c.notice, change=c.change, sub=c.subscriber,
                                        now=self.clock())
            if unrecorded is not None:
                # The previous mail's row must be written before another mail goes out.
                try:
                    await asyncio.shield(unrecorded)
                except Exception as exc:  # that mail's failure, not this one's
                    raise RoundFailed(f"a sent mail could not be recorded: {exc}") from exc
            if self.shadow:
                await self.store.mark_shadow(d.id, self.clock(), subject=mail.subject,
                                             message=mail.data, charset=mail.charset)
                self.progress()
                log.info("mail kept, not sent (shadow)", charset=mail.charset)
                return unrecorded
            await self.outbound.acquire()
            recorded = await self._send(c, mail)
            self.progress()  # each send is progress, however slow the rate
            return recorded

    async def _delivery_crashed(self, c: Claimed, exc: Exception) -> None:
        """Our code failed on this delivery (a template, a transport's surprise): it is
        quarantined and failed with the incident id, so that it is neither stranded in
        `sending` nor retried in a tight loop; an operator can retry it once mended."""
        d, now = c.delivery, self.clock()
        incident = await contain(self.store, self.metrics, exc, unit="delivery",
                                 origin="delivery", ref=f"delivery:{d.id}",
                                 payload=json.dumps(notice_to_json(c.notice),
                                                    ensure_ascii=False), now=now)
        await self.store.mark_final(d.id, now, DeliveryState.FAILED,
                                    f"internal error: {describe(exc)} (incident {incident})")

    def sending_changed(self) -> None:
        """Another host paused or resumed sending: read the flag afresh, now."""
        self.outbound.switch.changed_elsewhere()
        self.wake.set()

    async def _paused(self) -> bool:
        return await self.outbound.switch.paused()

    async def _skip_if_unwanted(self, c: Claimed) -> bool:
        d, now = c.delivery, self.clock()
        if c.suppressed:
            await self.store.mark_final(d.id, now, DeliveryState.SUPPRESSED,
                                        "address is suppressed")
            return True
        if not c.subscriber_live or c.subscriber.status != SubscriberStatus.ACTIVE \
                or c.subscriber.paused:
            why = "subscriber deleted" if not c.subscriber_live else \
                f"subscriber {c.subscriber.status}" if c.subscriber.status != \
                SubscriberStatus.ACTIVE else "subscriber paused"
            await self.store.mark_final(d.id, now, DeliveryState.SKIPPED, why)
            return True
        return False

    async def _send(self, c: Claimed, mail: Rendered) -> asyncio.Future[None] | None:
        d, transport = c.delivery, self.outbound.name
        started = time.monotonic()
        try:
            provider_id = await self.outbound.send(mail)
        except SendError as err:
            await self._failed(c, err)
            return None
        except asyncio.CancelledError:
            # Shutdown ran out of time mid-send: whether it went is unknown, so it goes
            # again after the restart (at-least-once), as after a crash.
            raise
        duration = time.monotonic() - started
        log.info("mail sent", ses_message_id=provider_id, transport=transport,
                 attempt=d.attempts, charset=mail.charset, duration_s=round(duration, 4))
        # Written even if shutdown cancels us now (the write runs in its own task).
        return await self.recorder.submit(d.id, transport, mail.message_id, provider_id)

    async def _failed(self, c: Claimed, err: SendError) -> None:
        d, now = c.delivery, self.clock()
        if err.failure == Failure.PAUSED:
            # The account cannot send: stop everything, keep this one for after resume.
            await self._pause_account(err, now)
            await self.store.release(d.id, now)
            return
        if err.failure == Failure.PERMANENT:
            await self.store.mark_final(d.id, now, DeliveryState.FAILED, err.reason)
            log.warning("mail failed permanently", reason=err.reason)
            return
        if err.failure == Failure.THROTTLED:
            await self._throttled()
        if d.attempts >= self.cfg.max_attempts:
            reason = f"gave up after {d.attempts} attempts: {err.reason}"
            await self.store.mark_final(d.id, now, DeliveryState.FAILED, reason)
            log.warning("mail failed", reason=reason)
            return
        next_at: datetime = now + retry_delay(d.attempts, self.cfg, self.rng)
        await self.store.mark_retry(d.id, now, next_at, err.reason)
        log.info("mail will be retried", failure=str(err.failure), reason=err.reason,
                 attempt=d.attempts, retry_at=next_at.isoformat())

    async def _pause_account(self, err: SendError, now: datetime) -> None:
        """The account cannot send (SES paused, an identity not verified): every mail
        waits, paused with the reason, until an operator resumes."""
        name = self.outbound.name
        await self.outbound.switch.set(paused=True, reason=f"{name.upper()}: {err.reason}",
                                       actor="ses" if name == "ses" else name, now=now)
        log.error("sending paused: the account or its settings cannot send; resume "
                  "once mended", reason=err.reason, transport=name)

    async def _throttled(self) -> None:
        self.outbound.throttled()
        if self.throttled is not None:  # several hosts: the others slow down too
            await self.throttled()
