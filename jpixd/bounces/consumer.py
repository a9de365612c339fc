"""The SQS consumer loop: long-poll SES notifications, record them, then delete them.

A message is deleted only after its events are committed; one that cannot be read is
kept verbatim in the quarantine first. Then the guard looks at the rates and pauses
sending when they approach SES's review thresholds.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from jpixd import logs
from jpixd.barrier import contain
from jpixd.bounces.parse import MailEvent, NotificationError, label, parse
from jpixd.bounces.rules import Decision, decide, guard_since, judge
from jpixd.config import BouncesConfig
from jpixd.loop import Loop, Reloaded
from jpixd.mail.outbound import SendingSwitch
from jpixd.metrics import Metrics
from jpixd.model import Clock
from jpixd.records import EventOutcome
from jpixd.retry import Backoff
from jpixd.store.contract import ConsumerStore

log = structlog.get_logger("jpixd.bounces")


class BounceConsumer(Loop):
    name = "bounces"
    part_role = "guard"  # judging the rates; every host records events
    interval = 0.0  # the long poll is the wait

    def __init__(self, sqs: Any, cfg: BouncesConfig, store: ConsumerStore, metrics: Metrics,
                 clock: Clock, switch: SendingSwitch, *, file_cases: bool,
                 rng: random.Random | None = None) -> None:
        super().__init__()
        self.switch = switch  # the guard pauses all sending through it
        self.rng = rng or random.Random()
        assert cfg.queue_url is not None
        self.sqs = sqs
        self.cfg = cfg
        self.queue_url = cfg.queue_url
        self.store = store
        self.metrics = metrics
        self.clock = clock
        # SQS's long poll and how long a received message stays ours: [bounces]'s, the
        # one place their defaults are declared.
        self.wait_seconds = int(cfg.wait_time.total_seconds())
        self.visibility = max(int(cfg.visibility_timeout.total_seconds()), 1)
        # Backlog cases are recorded only when a reconciler will file them: without
        # [backlog], old cases would otherwise pile up and flood Backlog once it is set.
        self.file_cases = file_cases
        self.failures = 0
        self.last_level = "ok"

    @property
    def stale_after(self) -> float:
        return max(3.0 * self.wait_seconds, 60.0)

    def apply(self, change: Reloaded) -> None:
        self.cfg = change.cfg.bounces

    def next_delay(self) -> float:
        # Errors back off (1 s doubling), but never past half the staleness: a loop that
        # waits out an SQS outage is degraded, not wedged, and must not look wedged to
        # readiness or the watchdog.
        return Backoff(1.0, self.stale_after / 2).delay(self.failures, self.rng)

    def reset(self) -> None:
        self.failures = 0

    async def run_once(self) -> None:
        try:
            resp = await self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_seconds, VisibilityTimeout=self.visibility)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            self.failures += 1
            self.degraded = f"SQS receive failing ({self.failures} in a row)"
            log.warning("SQS receive failed; backing off", error=str(exc),
                        failures=self.failures)
            return
        self.failures, self.degraded = 0, None
        messages = resp.get("Messages", [])
        if not messages:
            return
        received = time.monotonic()
        # Ten at a time: one transaction for the receive, a savepoint per message, so a
        # message our code cannot take is rolled back alone and quarantined.
        done: list[dict[str, str]] = []
        for start in range(0, len(messages), 10):
            if time.monotonic() - received > self.visibility / 2:
                await self._extend(messages[start:])
                received = time.monotonic()
            chunk = messages[start:start + 10]
            await self._handle_batch(chunk)
            done += [{"Id": str(len(done) + i), "ReceiptHandle": m["ReceiptHandle"]}
                     for i, m in enumerate(chunk)]
            self.progress()
        await self._delete(done)
        await self.check_guard(self.clock())

    async def _handle_batch(self, messages: list[dict[str, Any]]) -> None:
        """Parse each message (a bad one is quarantined as it is), record the good ones'
        events together, then log and count each message's outcome."""
        parsed: list[tuple[str, str, list[MailEvent]]] = []
        for m in messages:
            body, sqs_id = m.get("Body", ""), m.get("MessageId", "?")
            try:
                events, topic = parse(body)
                if self.cfg.expected_topic_arns and topic not in self.cfg.expected_topic_arns:
                    raise NotificationError(f"TopicArn {topic!r} is not one we expect")
            except NotificationError as exc:
                await self.store.quarantine(origin="sqs", ref=sqs_id, reason=str(exc),
                                            payload=body, now=self.clock())
                self.metrics.sqs_messages.labels("quarantined").inc()
                log.warning("SQS message quarantined", reason=str(exc), sqs_message_id=sqs_id)
                continue
            except Exception as exc:  # the crash barrier: this message, not the loop
                await self._contained(sqs_id, body, exc)
                continue
            parsed.append((sqs_id, body, events))
        if not parsed:
            return
        results = await self.store.record_event_batches(
            [events for _, _, events in parsed], self.clock(), decide=self._decide,
            soft_window=self.cfg.soft_bounce_window, file_cases=self.file_cases)
        for (sqs_id, body, _), result in zip(parsed, results, strict=True):
            if isinstance(result, Exception):
                await self._contained(sqs_id, body, result)
                continue
            with logs.bound(sqs_message_id=sqs_id):
                self._recorded(result)

    async def _contained(self, sqs_id: str, body: str, exc: Exception) -> None:
        with logs.bound(sqs_message_id=sqs_id):
            await contain(self.store, self.metrics, exc, unit="sqs_message", origin="sqs",
                          ref=str(sqs_id), payload=str(body), now=self.clock())
        self.metrics.sqs_messages.labels("quarantined").inc()

    def _recorded(self, outcomes: list[EventOutcome]) -> None:
        new = [o for o in outcomes if o.new]
        self.metrics.sqs_messages.labels("processed" if new else "duplicate").inc()
        if not new:
            log.info("SQS message already recorded (a redelivery)", events=len(outcomes))
        for o in new:
            self.metrics.mail_events.labels(o.event.type, label(o.event.subtype)).inc()
            log.info("mail event recorded", type=o.event.type, subtype=o.event.subtype,
                     recipient=o.event.recipient, ses_message_id=o.event.ses_message_id,
                     delivery_id=o.delivery_id, suppressed=o.suppressed, reason=o.reason)

    def _decide(self, event: MailEvent, soft: int, self_service: bool) -> Decision:
        return decide(event, soft, self.cfg, self_service=self_service)

    async def _delete(self, entries: list[dict[str, str]]) -> None:
        if not entries:
            return
        try:
            resp = await self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            # Committed already: a redelivery is recognised as a duplicate.
            log.warning("SQS delete failed; the messages will come again", error=str(exc))
            return
        for failed in resp.get("Failed", []):
            log.warning("SQS delete failed for one message", entry=failed)

    async def _extend(self, rest: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                    "VisibilityTimeout": self.visibility} for i, m in enumerate(rest)]
        try:
            await self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url,
                                                           Entries=entries)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            log.warning("could not extend SQS visibility", error=str(exc))

    async def check_guard(self, now: datetime) -> None:
        """Rates over the guard window (since the last resume at the earliest). With
        several hosts, one of them judges (the `guard` role): every host's consumer
        records events, one pauses."""
        if not self.leads(self.part_role):
            return
        state = await self.store.sending_state()
        sent, bounces, complaints = await self.store.guard_counts(
            guard_since(now, self.cfg, state))
        verdict = judge(sent, bounces, complaints, self.cfg)
        self.metrics.bounce_rate.set(verdict.bounce_rate)
        self.metrics.complaint_rate.set(verdict.complaint_rate)
        self.metrics.suppressed_addresses.set(await self.store.suppressed_count())
        if verdict.level == "pause" and not state.paused:
            await self.switch.set(paused=True, reason=verdict.reason, actor="guard", now=now)
            if self.file_cases:  # the reconciler opens a High-priority issue for it
                await self.store.request_guard_ticket(reason=verdict.reason, paused_at=now,
                                                      now=now)
            log.error("sending paused by the bounce-rate guard", reason=verdict.reason)
        elif verdict.level == "warn" and self.last_level == "ok":
            log.warning("bounce or complaint rate high", reason=verdict.reason)
        self.last_level = verdict.level
