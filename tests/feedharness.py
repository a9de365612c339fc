"""The poller's test harness: a store, a real feed server on loopback, an injected clock
and sleep. `h` is registered as a fixture in conftest.py for every feed test."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from jpixd.config import SourceConfig
from jpixd.fanout import Policy
from jpixd.feeds.fetch import Fetcher
from jpixd.feeds.poller import FeedPoller
from jpixd.metrics import Metrics
from jpixd.model import JST, Subscriber
from jpixd.store import Store
from tests.feedserver import FeedServer, feed_server

T0 = datetime(2026, 11, 28, 15, 0, tzinfo=JST)


@dataclass
class Harness:
    store: Store
    server: FeedServer
    http: aiohttp.ClientSession
    registry: CollectorRegistry
    now: list[datetime] = field(default_factory=lambda: [T0])
    slept: list[float] = field(default_factory=list)
    metrics: Metrics | None = None

    def poller(self, *sources: SourceConfig, baseline: bool = False) -> FeedPoller:
        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)

        if self.metrics is None:
            self.metrics = Metrics(self.registry)
        return FeedPoller(list(sources), self.store, Fetcher(self.http),
                          self.metrics, lambda: self.now[0], Policy(tz=JST),
                          baseline=baseline, rng=random.Random(4), sleep=sleep)

    def advance(self, **kw: float) -> None:
        self.now[0] += timedelta(**kw)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def h(store: Store) -> AsyncIterator[Harness]:
    async with feed_server() as server, aiohttp.ClientSession() as http:
        await store.create_subscriber(Subscriber(email="noc@isp.example.jp"), T0)
        yield Harness(store, server, http, CollectorRegistry())


