"""Fan-out of one notice to 100,000 subscribers, committed in one transaction.

Targets on the 2-core reference machine: ≤ 2 s (issue 4), ≤ 1.0 s (issue 24). Subscribers
are spread over carriers, prefectures, kinds and windows so that matching does real work;
the notice is a Tokyo failure that about half of them should get.

fanout:instructions: the same two fan-outs' instructions under valgrind's callgrind, which
the host's stolen CPU does not move (a busy stretch moves the wall clock and even the CPU
time by half; about 5 minutes).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import callgrind
from jpixd.fanout import Policy, planner
from jpixd.model import Change, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.prefectures import CODES
from jpixd.records import RecordResult
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


NOTICE = Notice(source="east", external_id="F-BENCH", carrier="east",
                kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED,
                title="東京都の一部でフレッツ光ネクストがご利用しづらい状況について",
                prefectures=("13",), services=("フレッツ光ネクスト",))
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
POLICY = Policy(tz=ZoneInfo("Asia/Tokyo"))


async def fill(store: AnyStore) -> float:
    """The schema and the 100,000 subscribers: seconds taken."""
    await store.migrate(NOW)
    t0 = time.perf_counter()
    await store.import_subscribers([(s, ALL_COLUMNS) for s in subscribers(N, random.Random(7))],
                                   NOW)
    return time.perf_counter() - t0


async def cold(store: AnyStore) -> RecordResult:
    """The first fan-out after the import: every subscriber read and parsed."""
    return await store.record_revision(
        NOTICE, revision="bench-r1", change=Change.NEW, now=NOW,
        planner=planner(NOTICE, Change.NEW, NOW, POLICY))


async def warm(store: AnyStore) -> RecordResult:
    """The next notice (the 第2報 of the same failure): the audience reused, the first
    one's mail superseded."""
    return await store.record_revision(
        NOTICE, revision="bench-r2", change=Change.UPDATE, now=NOW,
        planner=planner(NOTICE, Change.UPDATE, NOW, POLICY))


async def measure(archive: bool = False, postgres: str | None = None) -> dict[str, float]:
    """On SQLite in a temporary folder, or on the (empty) PostgreSQL database given."""
    with tempfile.TemporaryDirectory() as tmp:
        if postgres is not None:
            from jpixd.store.pg.store import PgStore

            store: AnyStore = await PgStore.open(postgres)
        else:
            store = await Store.open(Path(tmp) / "bench.sqlite3")
        load = await fill(store)
        # With [archive]: every new delivery also writes its archive record (a trigger).
        await store.set_archiving(archive)
        # The process's CPU time too (its threads'; SQLite's work is in-process): the
        # host's stolen time moves it far less than the wall clock.
        t0, c0 = time.perf_counter(), time.process_time()
        result = await cold(store)
        cold_s, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        again = await warm(store)
        warm_s, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
        await store.close()
    assert again.superseded == result.deliveries
    return {"subscribers": N, "deliveries": result.deliveries, "import_s": round(load, 3),
            "fanout_cold_s": round(cold_s, 3), "fanout_warm_s": round(warm_s, 3),
            "cold_cpu_s": round(cold_cpu, 3), "warm_cpu_s": round(warm_cpu, 3),
            "deliveries_per_s_cold": round(result.deliveries / cold_s)}


async def _stage(base: Path, upto: str) -> None:
    """Run under callgrind: open a copy of the filled database, then the fan-outs up to
    `upto` ("open", "cold" or "warm")."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(base, Path(tmp) / "bench.sqlite3")
        store = await Store.open(Path(tmp) / "bench.sqlite3")
        await store.migrate(NOW)
        if upto in ("cold", "warm"):
            await cold(store)
        if upto == "warm":
            await warm(store)
        await store.close()


def instructions() -> None:
    """The two fan-outs' instructions on SQLite under callgrind: the database filled once
    outside it, then opened and fanned out to three stages; each fan-out is the
    difference between two stages, so start-up and opening cancel out. (About 5
    minutes.)"""
    if not callgrind.installed():
        print("fanout instructions: valgrind is not installed")  # noqa: T201
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "filled.sqlite3"

        async def filled() -> None:
            store = await Store.open(base)
            await fill(store)
            await store.close()

        asyncio.run(filled())
        collected = {upto: callgrind.instructions("bench.fanout", str(base), upto)
                     for upto in ("open", "cold", "warm")}
    cold_i, warm_i = collected["cold"] - collected["open"], collected["warm"] - collected["cold"]
    print(f"fanout instructions: cold={cold_i / 1e9:.2f}G warm={warm_i / 1e9:.2f}G "  # noqa: T201
          f"cold_per_subscriber={cold_i // N} warm_per_subscriber={warm_i // N}")


def run(parts: list[str]) -> None:
    if "instructions" in parts:  # only when asked for: it needs valgrind and minutes
        instructions()
        return
    archive = "archive" in parts
    figures = asyncio.run(measure(archive))
    label = "fanout[archive]" if archive else "fanout"
    print(f"{label}:", " ".join(f"{k}={v}" for k, v in figures.items()))  # noqa: T201


if __name__ == "__main__":  # `instructions` runs this under callgrind
    from jpixd import logs

    with open(os.devnull, "w") as sink:  # as `python -m bench` does: counted, not shown
        logs.configure("info", "json", stream=sink)
        asyncio.run(_stage(Path(sys.argv[1]), sys.argv[2]))
