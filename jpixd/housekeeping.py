"""Keeps the store-derived gauges current (outbox, pause, suppressions, the guard's rates)
so a scrape never hits SQL, and so they are right from the first scrape after a restart
and without a [bounces] queue (they used to be set only after a non-empty SQS batch)."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from jpixd.bounces.rules import guard_since, judge
from jpixd.config import BouncesConfig, RetentionConfig
from jpixd.loop import Loop, Reloaded
from jpixd.mail.outbound import SendingSwitch
from jpixd.metrics import Metrics
from jpixd.model import Clock
from jpixd.store.contract import HousekeepingStore

log = structlog.get_logger("jpixd.housekeeping")


class HousekeepingLoop(Loop):
    name = "housekeeping"
    part_role = "housekeeping"  # pruning; the gauges are kept on every host

    # Its own cadence, not settings: the gauges every 15 s, pruning once an hour.
    interval = 15.0
    prune_every = timedelta(hours=1)

    def __init__(self, store: HousekeepingStore, metrics: Metrics, clock: Clock,
                 switch: SendingSwitch, *, bounces: BouncesConfig,
                 retention: RetentionConfig) -> None:
        super().__init__()
        self.switch = switch
        self.bounces = bounces
        self.retention = retention
        self.pruned_at: datetime | None = None
        self.store = store
        self.metrics = metrics
        self.clock = clock

    def apply(self, change: Reloaded) -> None:
        self.bounces, self.retention = change.cfg.bounces, change.cfg.retention

    async def run_once(self) -> None:
        now = self.clock()
        for state, n in (await self.store.delivery_counts()).items():
            self.metrics.deliveries.labels(str(state)).set(n)
        self.metrics.outbox_oldest_pending_age.set(await self.store.oldest_pending_age(now))
        sending = await self.switch.state()  # and its gauge, on every host
        # The guard's figures as the guard computes them (since the last resume at most).
        verdict = judge(*await self.store.guard_counts(guard_since(now, self.bounces, sending)),
                        self.bounces)
        self.metrics.bounce_rate.set(verdict.bounce_rate)
        self.metrics.complaint_rate.set(verdict.complaint_rate)
        self.metrics.suppressed_addresses.set(await self.store.suppressed_count())
        # The gauges above on every host (each is scraped); pruning on one.
        if self.leads(self.part_role) and (
                self.pruned_at is None or now - self.pruned_at >= self.prune_every):
            await self.prune(now)

    async def prune(self, now: datetime) -> dict[str, int]:
        """History older than its retention, in small batches; what is left goes at the
        next hour (a large backlog of history never holds the database for long)."""
        self.pruned_at = now
        pruned = (await self.store.prune(self.retention.cutoffs(now))).counts
        if any(pruned.values()):
            log.info("history pruned", **pruned)
        return pruned
