"""Keeps the store-derived gauges current (outbox, pause) so a scrape never hits SQL."""

from __future__ import annotations

from jpixd.loop import Loop
from jpixd.metrics import Metrics
from jpixd.model import Clock
from jpixd.store import Store


class HousekeepingLoop(Loop):
    name = "housekeeping"

    def __init__(self, store: Store, metrics: Metrics, clock: Clock,
                 interval: float = 15.0) -> None:
        super().__init__()
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.interval = interval

    async def run_once(self) -> None:
        now = self.clock()
        for state, n in (await self.store.delivery_counts()).items():
            self.metrics.deliveries.labels(str(state)).set(n)
        oldest = await self.store.oldest_due_since(now)
        age = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
        self.metrics.outbox_oldest_pending_age.set(age)
        self.metrics.sending_paused.set(1 if (await self.store.sending_state()).paused else 0)
