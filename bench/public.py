"""The public feeds under readers (issue 21, security probe N7): 250 open construction
notices with 20,000-character bodies (what a hostile or very verbose feed can publish),
eight clients fetching `/notices.ics` and `/notices.atom` as fast as they are answered,
and meanwhile a small source polled through the admin API and the event loop's lag
sampled every 10 ms. Before the cache, one such request took 0.8 s of event-loop time
and a feed poll took 7.35 s instead of 7 ms (the probe's figures).

Figures: the feed poll's time alone and under the readers (median, worst; one poll in
five changes a notice, so every feed is built anew after it), the event loop's worst
lag, how many feed requests were answered and how many times a feed was built.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from jpixd.app import Daemon
from jpixd.config import load_mapping

SECONDS = float(os.environ.get("BENCH_PUBLIC_SECONDS", "10"))
TOKEN = "bench-admin-token-0123456789"


def _config(tmp: Path) -> dict[str, Any]:
    (tmp / "token").write_text(TOKEN)
    (tmp / "keys").write_text("k" * 32)
    wordy = [{"id": f"W{i}", "kind": "construction", "title": f"工事 {i}",
              "body": "回線工事のお知らせ、" * 2000, "prefectures": ["13"],
              "starts_at": "2027-01-20T02:00:00+09:00", "ends_at": "2027-01-20T06:00:00+09:00"}
             for i in range(250)]
    (tmp / "wordy.json").write_text(json.dumps({"notices": wordy}, ensure_ascii=False))
    _probe(tmp / "probe.json", "故障")
    return {
        "state_dir": str(tmp / "state"), "shutdown_timeout": "5s",
        "http": {"listen": "127.0.0.1:0", "public_listen": "127.0.0.1:0",
                 "admin_token_file": str(tmp / "token")},
        "web": {"base_url": "http://127.0.0.1", "secret_keys_file": str(tmp / "keys")},
        "mail": {"from": "noc@example.jp", "transport": "file",
                 "file": {"dir": str(tmp / "outbox")}},
        "sources": [{"name": "wordy", "kind": "json", "carrier": "east", "interval": "1h",
                     "url": (tmp / "wordy.json").as_uri(), "max_body_bytes": 32_000_000},
                    {"name": "probe", "kind": "json", "carrier": "west", "interval": "1h",
                     "url": (tmp / "probe.json").as_uri()}],
        "logging": {"format": "json", "level": "warning"},
    }


async def _poll_times(admin: str, n: int, probe: Path | None = None) -> list[float]:
    """`n` polls of the small source; with `probe`, the last of them finds its notice
    changed (and so makes every feed be built anew)."""
    out = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for i in range(n):
            if probe is not None and i == n - 1:
                _probe(probe, f"故障 {time.monotonic()}")
            started = time.perf_counter()
            async with http.post(f"{admin}/admin/v1/sources/probe/poll") as r:
                assert r.status == 200
            out.append(time.perf_counter() - started)
    return out


def _probe(path: Path, title: str) -> None:
    path.write_text(json.dumps({"notices": [
        {"id": "P1", "kind": "failure", "title": title, "prefectures": ["27"]}]},
        ensure_ascii=False))


async def _reader(public: str, until: float, counts: list[int]) -> None:
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            for path in ("/notices.ics", "/notices.atom"):
                async with http.get(public + path) as r:
                    await r.read()
                    counts.append(r.status)


def _readers(public: str, seconds: float, answered: Any) -> None:
    """Eight readers in a process of their own, as the probe's clients were: their
    side of a megabyte answer costs their event loop, not the daemon's."""
    async def all_eight() -> None:
        counts: list[int] = []
        until = time.monotonic() + seconds
        await asyncio.gather(*(_reader(public, until, counts) for _ in range(8)))
        answered.value = sum(1 for c in counts if c == 200)

    asyncio.run(all_eight())


async def _lag(stop: asyncio.Event, worst: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        worst.append(loop.time() - before - 0.01)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_mapping(_config(Path(tmp)), base_dir=Path(tmp), env={})
        daemon = Daemon(cfg, registry=CollectorRegistry())
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 30)
        admin, public = f"http://{daemon.bound[0]}", f"http://{daemon.public_bound[0]}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as h, \
                h.post(f"{admin}/admin/v1/sources/wordy/poll") as r:
            assert r.status == 200  # after the first poll's 250 notices are in
        alone = await _poll_times(admin, 20)
        changing: list[float] = []
        for _ in range(20):
            changing += await _poll_times(admin, 5, Path(tmp) / "probe.json")
        stop, lags = asyncio.Event(), list[float]()
        spawn = multiprocessing.get_context("spawn")
        answered = spawn.Value("i", 0)
        readers = spawn.Process(
            target=_readers, args=(public, SECONDS + 1, answered))
        readers.start()
        tasks = [asyncio.create_task(_lag(stop, lags))]
        loaded: list[float] = []
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            loaded += await _poll_times(admin, 5, Path(tmp) / "probe.json")
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.to_thread(readers.join, 30)
        assert daemon.runtime is not None and daemon.public is not None
        builds = daemon.public.feeds.builds
        daemon.runtime.supervisor.stop()
        await task
    ms = 1000.0
    print(f"public feeds: a feed poll alone median {statistics.median(alone) * ms:.1f} ms "  # noqa: T201
          f"(one in five changing a notice: median {statistics.median(changing) * ms:.1f}, "
          f"worst {max(changing) * ms:.1f} ms), under 8 feed readers median "
          f"{statistics.median(loaded) * ms:.1f} ms, worst {max(loaded) * ms:.1f} ms "
          f"({len(loaded)} polls in {SECONDS:.0f} s); event loop "
          f"worst lag {max(lags) * ms:.1f} ms; {answered.value} feed requests answered "
          f"(200) in {SECONDS + 1:.0f} s, {builds} builds")


def run(parts: list[str]) -> None:
    asyncio.run(main())
