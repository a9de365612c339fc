"""The PostgreSQL figures beside SQLite's (issue 16), on a server this benchmark starts
itself (Debian's binaries, as the tests do; fsync off, so these are the code's and the
server's figures, not a disk's).

fanout:  one failure notice to 100,000 subscribers, as `bench fanout` measures on SQLite.
sender:  the sender pipeline (claim → render → file transport → record, no rate limit,
         10,000 deliveries) with one host, then with three hosts: three processes, each a
         sender of its own on the same database, claiming with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import fanout
from bench.sender import bench_sender, prepare
from jpixd.mail.transports.file import FileTransport
from jpixd.model import DeliveryState
from jpixd.store.pg.store import PgStore
from tests.pgserver import admin, create_database, running_postgres

N = 10_000


async def _open(url: str) -> PgStore:
    return await PgStore.open(url, pool_size=4)


async def _send_until_done(url: str, outbox: str) -> None:
    """One host's sender: rounds until nothing is due or in flight anywhere."""
    store = await _open(url)
    sender = bench_sender(store, FileTransport(Path(outbox)))
    sender.claimer = f"bench-{os.getpid()}"
    try:
        while True:
            await sender.run_once()
            if sender.next_delay() == 0:
                continue  # a full claim: more is due (counting every round cost 19 µs a mail)
            counts = await store.delivery_counts()
            if counts[DeliveryState.PENDING] == 0 and counts[DeliveryState.SENDING] == 0:
                return
    finally:
        await sender.outbound.transport.close()
        await store.close()


def _host(url: str, outbox: str, go: Callable[[], object]) -> None:
    from jpixd import logs

    with open(os.devnull, "w") as sink:  # as `python -m bench` does: counted, not shown
        logs.configure(os.environ.get("BENCH_LOG_LEVEL", "info"), "json", stream=sink)
        go()  # every host starts at the same moment
        asyncio.run(_send_until_done(url, outbox))


async def _pipeline(server: str, hosts: int) -> tuple[float, int]:
    url = await create_database(server)
    store = await _open(url)
    await prepare(store, N)
    # The statistics autovacuum gathers within a minute of a fan-out: without them the
    # planner expects a dozen due rows and sorts all 10,000 on every claim (5 ms).
    await store.close()
    await admin(server, "ANALYZE deliveries", database=url.rsplit("/", 1)[1])
    with tempfile.TemporaryDirectory(dir="/dev/shm") as out:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(hosts + 1)
        procs = [ctx.Process(target=_host, args=(url, out, barrier.wait)) for _ in range(hosts)]
        for p in procs:
            p.start()
        await asyncio.to_thread(barrier.wait)
        started = time.perf_counter()
        for p in procs:
            await asyncio.to_thread(p.join)
        elapsed = time.perf_counter() - started
        files = len(os.listdir(out))
    return elapsed, files


def run(parts: list[str]) -> None:
    with running_postgres() as server:
        if not parts or "fanout" in parts:
            url = asyncio.run(create_database(server))
            figures = asyncio.run(fanout.measure(postgres=url))
            print("postgres fanout:",  # noqa: T201
                  " ".join(f"{k}={v}" for k, v in figures.items()))
        if not parts or "sender" in parts:
            for hosts in (1, 3):
                elapsed, files = asyncio.run(_pipeline(server, hosts))
                print(f"postgres sender[{hosts} host{'s' if hosts > 1 else ''}]: "  # noqa: T201
                      f"deliveries={N} files={files} seconds={elapsed:.2f} "
                      f"deliveries_per_s={N / elapsed:.0f}")
