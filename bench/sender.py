"""Sender benchmarks (issue 5).

pipeline: claim → render (Jinja2, ISO-2022-JP MIME) → file transport → record, with no
          rate limit; target ≥ 2,000 deliveries/s.
bucket:   the token bucket at 50/s for 30 s on the real clock: achieved rate within 2 %
          of 50 and no one-second window above rate + burst.
smtp:     2,000 mails to aiosmtpd on loopback through the pooled SMTP transport.
instructions: the pipeline's instructions a delivery under valgrind's callgrind, which
          the host's stolen CPU does not move (apt-get install valgrind; about 2 min).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import callgrind
from jpixd.config import SendingConfig, SmtpConfig, load_mapping
from jpixd.fanout import Policy, planner
from jpixd.mail.bucket import TokenBucket
from jpixd.mail.outbound import Outbound, RatePolicy, SendingSwitch
from jpixd.mail.render import Renderer
from jpixd.mail.sender import Sender
from jpixd.mail.transports import Transport
from jpixd.mail.transports.file import FileTransport
from jpixd.mail.transports.smtp import SmtpTransport
from jpixd.metrics import Metrics
from jpixd.model import JST, Change, DeliveryState, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.store import AnyStore, Store
from jpixd.subscribers import FIELDS

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
NOTICE = Notice(source="west", external_id="F1", carrier="west", kind=NoticeKind.FAILURE,
                status=NoticeStatus.OCCURRED, report_number=2, prefectures=("27",),
                title="大阪府の一部地域でフレッツ光ネクストがご利用しづらい状況について",
                body="原因を調査中です。復旧見込は未定です。" * 3, services=("フレッツ光ネクスト",))


async def prepare(store: AnyStore, n: int) -> None:
    """n subscribers and one notice to all of them: n deliveries due."""
    await store.migrate(NOW)
    await store.import_subscribers([(Subscriber(email=f"u{i}@isp{i % 50}.example.jp",
                                                name=f"担当{i}", organization="株式会社例",
                                                carriers=("west",)), frozenset(FIELDS))
                                    for i in range(n)], NOW)
    await store.record_revision(NOTICE, revision="r", change=Change.NEW, now=NOW,
                                planner=planner(NOTICE, Change.NEW, NOW, Policy(tz=JST)))


def bench_sender(store: AnyStore, transport: Transport) -> Sender:
    """No rate limit, concurrency 8, claims of 400."""
    cfg = load_mapping({"mail": {"from": "n@example.jp"}, "http": {"admin_token": "env:T"}},
                       env={"T": "x" * 16})
    metrics = Metrics()
    outbound = Outbound(transport, TokenBucket(None), metrics, RatePolicy(None, False),
                        SendingSwitch(store, metrics))
    return Sender(store, outbound, Renderer(cfg.mail, b"k" * 32), metrics, lambda: NOW,
                  SendingConfig(concurrency=8, claim_batch=400), lease=cfg.cluster.lease,
                  rng=random.Random(1))


async def _drain(n: int, tmp: Path, transport: Transport) -> tuple[float, float, float]:
    """(wall seconds, event-loop thread CPU seconds, the whole process's CPU seconds) to
    send n deliveries."""
    store = await Store.open(tmp / "b.sqlite3")
    await prepare(store, n)
    t = transport
    sender = bench_sender(store, t)
    started, cpu, all_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    while True:
        await sender.run_once()
        # A full claim means more is due: counted only once a claim comes back short.
        if sender.next_delay() > 0 and not (await store.delivery_counts())[
                DeliveryState.PENDING]:
            break
    elapsed = time.perf_counter() - started
    # The event loop thread's own CPU, and the process's (the database thread's too):
    # steadier than the wall clock on a VM whose host steals time, so a change of a few
    # per cent shows there first.
    loop_cpu, process_cpu = time.thread_time() - cpu, time.process_time() - all_cpu
    assert (await store.delivery_counts())[DeliveryState.SENT] == n
    await t.close()
    await store.close()
    return elapsed, loop_cpu, process_cpu


async def pipeline(n: int = 10_000) -> None:
    # Three places: database and outbox on the ordinary disk; database on the disk and
    # outbox on tmpfs; both on tmpfs. Creating a file on this VM's disk costs 0.03-0.4 ms
    # of kernel time (it varies with the host); the last two show the pipeline's own cost
    # with its state where production keeps it. Concurrency 8 (the default), claim 400.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: ASYNC240 (once)
    places = [("disk", None, None)] + ([("disk+tmpfs-outbox", None, shm),
                                          ("tmpfs", shm, shm)] if shm else [])
    for label, db_dir, outbox_dir in places:
        with tempfile.TemporaryDirectory(dir=db_dir) as tmp, \
                tempfile.TemporaryDirectory(dir=outbox_dir) as out:
            elapsed, cpu, process = await _drain(n, Path(tmp), FileTransport(Path(out)))
            files = len(list(Path(out).glob("*.eml")))  # noqa: ASYNC240 (after timing)
        print(f"pipeline[{label}]: deliveries={n} files={files} "  # noqa: T201
              f"seconds={elapsed:.2f} deliveries_per_s={n / elapsed:.0f} "
              f"loop_cpu_us_per_delivery={cpu / n * 1e6:.0f} "
              f"process_cpu_us_per_delivery={process / n * 1e6:.0f}")


async def bucket(rate: float = 50.0, seconds: float = 30.0) -> None:
    b = TokenBucket(rate)
    start = time.monotonic()
    stamps = []
    while (now := time.monotonic() - start) < seconds:
        await b.acquire()
        stamps.append(now)
    achieved = len(stamps) / stamps[-1]
    worst = max(sum(1 for s in stamps if w <= s < w + 1) for w in range(int(stamps[-1])))
    print(f"bucket: target={rate}/s seconds={seconds:.0f} achieved={achieved:.2f}/s "  # noqa: T201
          f"error={abs(achieved - rate) / rate * 100:.2f}% worst_1s_window={worst} "
          f"limit={rate + b.burst:.0f}")


async def smtp(n: int = 2000) -> None:
    from aiosmtpd.controller import Controller

    class Sink:
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            Sink.count += 1
            return "250 OK"

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, starttls=False,
                                                 pool_size=4))
            elapsed, _, _ = await _drain(n, Path(tmp), transport)
    finally:
        controller.stop()
    print(f"smtp: mails={n} received={Sink.count} pool=4 seconds={elapsed:.2f} "  # noqa: T201
          f"mails_per_s={n / elapsed:.0f}")


async def _send(n: int) -> None:
    """Send n of a 3,000-delivery outbox (n a multiple of the 400 a claim takes)."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: ASYNC240 (once)
    with tempfile.TemporaryDirectory(dir=shm) as tmp, \
            tempfile.TemporaryDirectory(dir=shm) as out:
        store = await Store.open(Path(tmp) / "b.sqlite3")
        await prepare(store, 3000)
        sender = bench_sender(store, FileTransport(Path(out)))
        while (await store.delivery_counts())[DeliveryState.SENT] < n:
            await sender.run_once()
        await store.close()


async def instructions() -> None:
    """The pipeline to 400 and to 2,400 deliveries under callgrind: the difference over
    2,000 is a delivery's instructions, set-up and start-up cancelled out."""
    if not callgrind.installed():
        print("instructions: valgrind is not installed")  # noqa: T201
        return
    low, high = [await asyncio.to_thread(callgrind.instructions, "bench.sender", str(n))
                 for n in (400, 2400)]
    print(f"instructions: per_delivery={(high - low) // 2000}")  # noqa: T201


PARTS: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "pipeline": pipeline, "bucket": bucket, "smtp": smtp, "instructions": instructions}


def run(parts: list[str]) -> None:
    # `instructions` only when asked for: it needs valgrind and takes minutes.
    for name in parts or [p for p in PARTS if p != "instructions"]:
        asyncio.run(PARTS[name]())


if __name__ == "__main__":  # `instructions` runs this under callgrind
    from jpixd import logs

    with open(os.devnull, "w") as sink:  # as `python -m bench` does: counted, not shown
        logs.configure("info", "json", stream=sink)
        asyncio.run(_send(int(sys.argv[1])))
