"""Supervision: crashed loops restart with backoff and are counted; too many crashes end
the process with a non-zero code; readiness is false while a loop is down."""

from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from jpixd.app import Daemon
from jpixd.exhaustion import exhaustion
from jpixd.loop import Loop
from jpixd.store import Store
from tests.conftest import ADMIN_TOKEN, make_config, running_daemon


class CrashingLoop(Loop):
    """Raises on its first `crashes` runs, then works (beats) until stopped."""

    name = "crashy"
    interval = 0.01

    def __init__(self, crashes: int) -> None:
        super().__init__()
        self.crashes = crashes
        self.runs = 0
        self.crashed = asyncio.Event()
        self.healthy = asyncio.Event()

    async def run_once(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            self.crashed.set()
            raise RuntimeError(f"bug number {self.runs}")
        self.healthy.set()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_a_crashed_loop_is_restarted_and_counted(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, supervisor={"restart_backoff": "10ms", "max_restarts": 5})
    registry = CollectorRegistry()
    loop = CrashingLoop(crashes=2)
    async with running_daemon(cfg, [loop], registry=registry) as d:
        await asyncio.wait_for(loop.healthy.wait(), timeout=10)
        assert sample(registry, "jpixd_loop_restarts_total", loop="crashy") == 2
        assert sample(registry, "jpixd_loop_up", loop="crashy") == 1
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/readyz") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["loops"]["crashy"]["restarts"] == 2
    assert d.task.result() == 0


async def test_readyz_is_503_while_a_loop_is_down(tmp_path: Path) -> None:
    # A long backoff keeps the crashed loop down while we look.
    cfg = make_config(tmp_path, supervisor={"restart_backoff": "1h", "restart_backoff_max": "1h"})
    loop = CrashingLoop(crashes=1)
    async with running_daemon(cfg, [loop]) as d:
        await asyncio.wait_for(loop.crashed.wait(), timeout=10)
        status = d.daemon.runtime.supervisor.status["crashy"] if d.daemon.runtime else None
        assert status is not None
        # The supervisor marks the loop down in the same step as the raise.
        assert not status.up
        async with aiohttp.ClientSession() as http:
            async with http.get(d.base_url + "/readyz") as r:
                body = await r.json()
                assert r.status == 503
                assert body["ready"] is False
                # Unauthenticated: the state, not the error text (probe L7) …
                assert "loop crashy is down" in body["reasons"]
                assert "bug number 1" not in await r.text()
            async with http.get(d.base_url + "/admin/v1/status",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
                # … which operators get from the admin API.
                assert "bug number 1" in await r.text()
            async with http.get(d.base_url + "/healthz") as r:
                assert r.status == 200  # alive, just not ready


async def test_past_the_intensity_limit_the_daemon_exits_non_zero(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, supervisor={"restart_backoff": "1ms", "max_restarts": 3,
                                            "restart_window": "1m"})
    loop = CrashingLoop(crashes=1000)
    daemon = Daemon(cfg, extra_loops=[loop], registry=CollectorRegistry())
    code = await asyncio.wait_for(daemon.run(), timeout=20)
    assert code == 1
    assert loop.runs == 4  # the first run and three restarts; the fourth crash gives up
    assert daemon.runtime is not None
    assert "crashed 4 times" in (daemon.runtime.supervisor.failure or "")


class WedgedLoop(Loop):
    """Never finishes its first unit of work: up, but not fresh."""

    name = "wedged"
    interval = 1.0

    @property
    def stale_after(self) -> float:
        return 10.0  # well below housekeeping's 60 s, so only this loop goes stale

    async def run_once(self) -> None:
        await asyncio.Event().wait()


async def test_a_wedged_loop_makes_the_daemon_unready(tmp_path: Path) -> None:
    # The wedged loop never finishes, so shutdown has to cancel it after the timeout.
    cfg = make_config(tmp_path, shutdown_timeout="200ms")
    clock = [1000.0]
    loop = WedgedLoop()
    async with running_daemon(cfg, [loop], monotonic=lambda: clock[0]) as d:
        async with aiohttp.ClientSession() as http:
            async with http.get(d.base_url + "/readyz") as r:
                assert r.status == 200
            clock[0] += loop.stale_after + 1
            async with http.get(d.base_url + "/readyz") as r:
                assert r.status == 503
                reasons = (await r.json())["reasons"]
                assert reasons == [f"loop wedged has not made progress for "
                                   f"{loop.stale_after + 1:.0f}s"]
    assert d.task.result() == 0


class FullDiskLoop(CrashingLoop):
    """Fails as SQLite does on a full disk, more often than max_restarts, then works."""

    name = "writer"

    async def run_once(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise sqlite3.OperationalError("database or disk is full")
        self.healthy.set()


async def test_a_full_disk_is_waited_out_not_given_up_on(tmp_path: Path) -> None:
    """Security probe L8: a full disk crash-looped the process to its exit, and systemd
    gave up; the daemon now stays up, unready, and recovers once space is back."""
    cfg = make_config(tmp_path, supervisor={"restart_backoff": "1ms",
                                            "restart_backoff_max": "5ms", "max_restarts": 2})
    registry = CollectorRegistry()
    loop = FullDiskLoop(crashes=6)
    async with running_daemon(cfg, [loop], registry=registry) as d:
        await asyncio.wait_for(loop.healthy.wait(), timeout=10)
        assert sample(registry, "jpixd_loop_restarts_total", loop="writer") == 6
        assert not d.task.done()
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/readyz") as r:
            assert r.status == 200
    assert d.task.result() == 0


async def test_the_feed_poller_waits_out_a_full_database(tmp_path: Path) -> None:
    """Security probe N5: the poller's write failed with SQLITE_FULL, its crash barrier's
    own write failed too, and the TaskGroup wrapped both in an ExceptionGroup that was
    counted as a crash: exit 1 in 30 s. A real full database here (SQLite's page limit,
    what it answers on a full disk), the real poller: the daemon stays up, says why in
    /readyz, and records the notices once there is room again."""
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"notices": []}))
    cfg = make_config(tmp_path, supervisor={"restart_backoff": "1ms",
                                            "restart_backoff_max": "5ms", "max_restarts": 2},
                      sources=[{"name": "local", "kind": "json", "carrier": "east",
                                "url": feed.as_uri(), "interval": "1s"}])
    async with running_daemon(cfg, registry=CollectorRegistry()) as d:
        rt = d.daemon.runtime
        assert rt is not None
        feeds = rt.loops["feeds"]
        await asyncio.wait_for(feeds.first_round.wait(), 10)
        assert isinstance(rt.store, Store)
        db = rt.store._db  # SQLite's own connection
        async with db.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await db.execute(f"PRAGMA max_page_count = {row[0]}")  # full from now on
        feed.write_text(json.dumps({"notices": [
            {"id": f"F{i}", "kind": "failure", "title": f"故障 {i}", "body": "本文" * 2000,
             "prefectures": ["13"]} for i in range(40)]}, ensure_ascii=False))
        status = rt.supervisor.status["feeds"]
        # Past max_restarts (2) several times over, and still up.
        await asyncio.wait_for(rt.supervisor.wait_for(lambda: status.restarts > 6), 20)
        assert status.exhausted == "disk space"
        assert not d.task.done()
        # Between two restarts the loop is up for an instant: asked while it is down,
        # what /readyz answers (HTTP would race the next restart).
        await asyncio.wait_for(rt.supervisor.wait_for(lambda: not status.up), 10)
        ok, reasons = rt.supervisor.healthy(detail=False)
        assert not ok and "loop feeds is waiting for disk space" in reasons
        await db.execute("PRAGMA max_page_count = 1073741823")  # space is back
        await asyncio.wait_for(rt.supervisor.wait_for(lambda: status.up), 10)
        await asyncio.wait_for(feeds.next_round(), 10)
        _, total = await rt.store.list_notices(limit=1)
        assert total == 40
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/readyz") as r:
            assert r.status == 200
    assert d.task.result() == 0


def test_exhaustion_is_seen_inside_groups_and_chains() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    # What the probe saw: the barrier's own write failed while handling the first.
    barrier: Exception
    try:
        try:
            raise full
        except sqlite3.OperationalError:
            raise sqlite3.OperationalError("database or disk is full") from None
    except sqlite3.OperationalError as exc:
        barrier = exc
    group = ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("x"), barrier])
    assert exhaustion(group) == "disk space"
    assert exhaustion(BaseExceptionGroup("outer", [group])) == "disk space"
    assert exhaustion(OSError(errno.EROFS, "Read-only file system")) == "a writable filesystem"
    assert exhaustion(sqlite3.OperationalError("attempt to write a readonly database")) \
        == "a writable filesystem"
    assert exhaustion(ExceptionGroup("g", [ValueError("no")])) is None
    assert exhaustion(RuntimeError("bug")) is None
