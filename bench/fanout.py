"""Fan-out of one notice to 100,000 subscribers, committed in one transaction.

Targets on the 2-core reference machine: ≤ 2 s (issue 4), ≤ 1.0 s (issue 24, not met
yet). Subscribers are spread over carriers, prefectures, kinds and windows so that
matching does real work; the notice is a Tokyo failure that about half of them should get.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jpixd.fanout import Policy, planner
from jpixd.model import Change, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.prefectures import CODES
from jpixd.store import AnyStore, Store
from jpixd.subscribers import FIELDS

ALL_COLUMNS = frozenset(FIELDS)

N = 100_000


def subscribers(n: int, rng: random.Random) -> list[Subscriber]:
    codes = sorted(CODES)
    out = []
    for i in range(n):
        prefs = () if rng.random() < 0.5 else tuple(sorted(rng.sample(codes, rng.randint(1, 3))))
        if prefs and rng.random() < 0.5:
            prefs = tuple(sorted({*prefs, "13"}))
        out.append(Subscriber(
            email=f"user{i}@isp{i % 500}.example.jp", name=f"担当者{i}",
            organization=f"株式会社テスト{i % 500}",
            carriers=("east", "west") if rng.random() < 0.7 else ("east",),
            prefectures=prefs,
            kinds=("construction", "failure") if rng.random() < 0.8 else ("failure",),
            windows=("day", "night", "late_night") if rng.random() < 0.6 else ("day",),
        ))
    return out


async def measure(archive: bool = False, postgres: str | None = None) -> dict[str, float]:
    """On SQLite in a temporary folder, or on the (empty) PostgreSQL database given."""
    rng = random.Random(7)
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        if postgres is not None:
            from jpixd.store.pg.store import PgStore

            store: AnyStore = await PgStore.open(postgres)
        else:
            store = await Store.open(Path(tmp) / "bench.sqlite3")
        await store.migrate(now)
        # With [archive]: every new delivery also writes its archive record (a trigger).
        await store.set_archiving(archive)
        t0 = time.perf_counter()
        await store.import_subscribers([(s, ALL_COLUMNS) for s in subscribers(N, rng)], now)
        load = time.perf_counter() - t0
        notice = Notice(source="east", external_id="F-BENCH", carrier="east",
                        kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED,
                        title="東京都の一部でフレッツ光ネクストがご利用しづらい状況について",
                        prefectures=("13",), services=("フレッツ光ネクスト",))
        policy = Policy(tz=ZoneInfo("Asia/Tokyo"))
        # Cold: the first fan-out after the import reads and parses every subscriber.
        # The process's CPU time too (its threads'; SQLite's work is in-process): the
        # host's stolen time moves it far less than the wall clock.
        t0, c0 = time.perf_counter(), time.process_time()
        result = await store.record_revision(
            notice, revision="bench-r1", change=Change.NEW, now=now,
            planner=planner(notice, Change.NEW, now, policy))
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        # Warm: the next notice (here the 第2報 of the same failure) reuses the audience.
        t0, c0 = time.perf_counter(), time.process_time()
        again = await store.record_revision(
            notice, revision="bench-r2", change=Change.UPDATE, now=now,
            planner=planner(notice, Change.UPDATE, now, policy))
        warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
        await store.close()
    assert again.superseded == result.deliveries
    return {"subscribers": N, "deliveries": result.deliveries, "import_s": round(load, 3),
            "fanout_cold_s": round(cold, 3), "fanout_warm_s": round(warm, 3),
            "cold_cpu_s": round(cold_cpu, 3), "warm_cpu_s": round(warm_cpu, 3),
            "deliveries_per_s_cold": round(result.deliveries / cold)}


def run(parts: list[str]) -> None:
    archive = "archive" in parts
    figures = asyncio.run(measure(archive))
    label = "fanout[archive]" if archive else "fanout"
    print(f"{label}:", " ".join(f"{k}={v}" for k, v in figures.items()))  # noqa: T201
