"""Three real `jpixd run` processes on one PostgreSQL (issue 16): a 3,000-recipient
notice is mailed exactly once when nothing fails, within the account's send rate shared
by the three; a kill -9 of the leader mid-send loses nothing (its leases expire and the
others send its mail, duplicates within its in-flight bound), and the feed poller and
the Backlog reconciler move to another host within `leader_timeout`."""

from __future__ import annotations

import asyncio
import email
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from jpixd.loop import LEADER_ROLES as ROLES
from jpixd.model import Subscriber
from jpixd.store.pg.store import PgStore
from tests.backlogserver import API_KEY, backlog_server
from tests.conftest import ADMIN_TOKEN, DaemonProcess, base_mapping, toml_dumps
from tests.pgserver import needs_postgres
from tests.smtpserver import PASSWORD, USER, Received, SmtpPeer, smtp_server

pytestmark = needs_postgres

TOTAL = 3000
LEADER_TIMEOUT = 3.0


@dataclass
class Arrivals:
    """What the SMTP peer received: each delivery's count and each arrival's time."""

    seen: Counter[str] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)
    all_in: threading.Event = field(default_factory=threading.Event)
    on_count: dict[int, Callable[[], None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, item: Received) -> None:
        msg = email.message_from_bytes(item.data)
        with self.lock:
            self.seen[str(msg["X-Jpixd-Delivery"])] += 1
            self.times.append(time.monotonic())
            action = self.on_count.pop(len(self.times), None)
            if len(self.seen) == TOTAL:
                self.all_in.set()
        if action is not None:
            action()


async def _subscribers(url: str) -> None:
    store = await PgStore.open(url, pool_size=2)
    try:
        now = datetime.now(UTC)
        rows = [(Subscriber(email=f"user{i}@isp.example.jp", carriers=("west",)),
                 frozenset({"email", "carriers"})) for i in range(TOTAL)]
        await store.import_subscribers(rows, now)
    finally:
        await store.close()


def _host_config(root: Path, i: int, url: str, peer: SmtpPeer, *, rate: int,
                 concurrency: int, feed: Path, lease: str,
                 backlog: dict[str, Any] | None = None) -> Path:
    home = root / f"host{i}"
    home.mkdir()
    (home / "smtp-password").write_text(PASSWORD)
    cfg = base_mapping(
        home, database_url=url,
        cluster={"lease": lease, "leader_timeout": f"{LEADER_TIMEOUT:g}s"},
        sources=[{"name": "local", "kind": "json", "carrier": "west", "url": feed.as_uri(),
                  "interval": "1h", "send_on_first_poll": True}],
        sending={"concurrency": concurrency},
        mail={"from": "notice@example.jp", "transport": "smtp",
              "ses": {"max_send_rate": rate},
              "smtp": {"host": peer.host, "port": peer.port, "starttls": True,
                       "username": USER, "password_file": str(home / "smtp-password"),
                       "pool_size": 4}})
    if backlog is not None:
        cfg["backlog"] = backlog
    path = home / "jpixd.toml"
    path.write_text(toml_dumps(cfg), encoding="utf-8")
    return path


def _feed(root: Path) -> Path:
    feed = root / "feed.json"
    feed.write_text(json.dumps({"notices": [{
        "id": "F1", "kind": "failure", "title": "大阪府の一部で故障", "prefectures": ["27"]}]},
        ensure_ascii=False), encoding="utf-8")
    return feed


@contextmanager
def _hosts(configs: list[Path], start: Callable[..., DaemonProcess],
           peer: SmtpPeer) -> Iterator[list[tuple[DaemonProcess, str]]]:
    """The processes, each with its admin URL once it is ready."""
    env = {"SSL_CERT_FILE": peer.ca_file}
    procs = [start(["run", "--config", str(c)], env) for c in configs]
    out = []
    for p in procs:
        listening = p.wait_for_event("http listening", timeout=60)
        p.wait_for_event("jpixd ready", timeout=60)
        out.append((p, f"http://{listening['addresses'][0]}"))
    yield out


async def _status(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            url + "/admin/v1/status",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def _leaders(urls: list[str]) -> dict[str, list[str]]:
    """role → the hosts that say they lead it."""
    out: dict[str, list[str]] = {}
    for url in urls:
        cluster = (await _status(url))["cluster"]
        for role in cluster["leads"]:
            out.setdefault(role, []).append(cluster["host"])
    return out


def _when_leading(p: DaemonProcess, role: str, within: float) -> float:
    """Wait for `p` to log that it leads `role`; that line's time (epoch seconds)."""
    def led(events: list[dict[str, Any]]) -> bool:
        return any(e.get("event") == "leading" and role in e.get("roles", ())
                   for e in events)

    p.wait_until(led, timeout=within)
    [line] = [json.loads(ln) for ln in p.lines if ln.startswith("{")
              and '"leading"' in ln and f'"{role}"' in ln][-1:]
    return datetime.fromisoformat(line["timestamp"]).timestamp()


async def _claimers(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(
            "SELECT COUNT(DISTINCT claimed_by) FROM deliveries WHERE state = 'sent'"))
    finally:
        await conn.close()


async def test_three_hosts_mail_each_recipient_once_within_the_shared_rate(
        tmp_path: Path, postgres_db: str,
        daemon_process: Callable[..., DaemonProcess]) -> None:
    rate = 80  # the account's rate: 3,000 mails take 37.5 s, the three hosts together
    await _subscribers(postgres_db)
    feed = _feed(tmp_path)
    arrivals = Arrivals()
    with smtp_server(str(tmp_path)) as peer:
        peer.handler.on_message = arrivals
        configs = [_host_config(tmp_path, i, postgres_db, peer, rate=rate, concurrency=4,
                                feed=feed, lease="2m") for i in range(3)]
        with _hosts(configs, daemon_process, peer) as hosts:
            assert await asyncio.to_thread(arrivals.all_in.wait, 120), (
                f"only {len(arrivals.seen)} of {TOTAL} arrived")
            leaders = await _leaders([url for _, url in hosts])
            for p, _ in hosts:
                p.proc.terminate()
            assert all(p.finish(timeout=60) == 0 for p, _ in hosts)

    assert set(arrivals.seen) == {str(i) for i in range(1, TOTAL + 1)}
    assert sum(arrivals.seen.values()) == TOTAL, "a mail went twice with nothing failing"
    assert await _claimers(postgres_db) == 3, "not every host sent"
    # Each singleton loop ran on exactly one host.
    assert set(leaders) == set(ROLES)
    assert all(len(who) == 1 for who in leaders.values()), leaders
    # The three together stay within the account's rate: 30 s from the third second.
    start = arrivals.times[0] + 3.0
    window = [t for t in arrivals.times if start <= t < start + 30.0]
    measured = len(window) / 30.0
    print(f"three hosts at {rate}/s: {measured:.2f}/s over 30 s")  # noqa: T201
    assert rate * 0.98 <= measured <= rate * 1.02, f"{measured:.2f}/s for a rate of {rate}/s"


async def test_kill_9_of_the_leader_mid_send_loses_nothing_and_its_roles_move(
        tmp_path: Path, postgres_db: str,
        daemon_process: Callable[..., DaemonProcess]) -> None:
    concurrency = 8
    await _subscribers(postgres_db)
    feed = _feed(tmp_path)
    arrivals = Arrivals()
    key = tmp_path / "backlog-key"
    key.write_text(API_KEY)
    async with backlog_server() as fake:
        backlog = {"base_url": fake.base, "api_key_file": str(key), "project_key": "NOC",
                   "issue_type": "バウンス", "reconcile_interval": "1s", "timeout": "2s"}
        with smtp_server(str(tmp_path)) as peer:
            peer.handler.on_message = arrivals
            configs = [_host_config(tmp_path, i, postgres_db, peer, rate=600,
                                    concurrency=concurrency, feed=feed, lease="10s",
                                    backlog=backlog) for i in range(3)]
            with _hosts(configs, daemon_process, peer) as hosts:
                # Wait until the poller runs somewhere (the mail flows), then find the
                # host that leads it and the reconciler.
                first_mail = threading.Event()
                arrivals.on_count[1] = first_mail.set
                assert await asyncio.to_thread(first_mail.wait, 60)
                leaders = await _leaders([url for _, url in hosts])
                assert all(len(who) == 1 for who in leaders.values()), leaders
                names = [(await _status(url))["cluster"]["host"] for _, url in hosts]
                victim_at = names.index(leaders["feeds"][0])
                victim = hosts[victim_at][0]
                killed_at: list[float] = []

                def kill() -> None:
                    killed_at.append(time.time())
                    victim.proc.kill()  # from the SMTP thread, mid-stream

                arrivals.on_count[TOTAL // 3] = kill
                assert await asyncio.to_thread(victim.finish, 120) == -9
                survivors = [h for i, h in enumerate(hosts) if i != victim_at]
                # The poller and the reconciler move to one of the others.
                for role in ("feeds", "backlog"):
                    if leaders[role][0] != names[victim_at]:
                        continue  # the victim did not lead it
                    took = await asyncio.to_thread(_first_to_lead, survivors, role)
                    assert took - killed_at[0] <= LEADER_TIMEOUT, (
                        f"{role} moved after {took - killed_at[0]:.2f}s")
                after = await _leaders([url for _, url in survivors])
                assert all(len(who) == 1 for who in after.values()), after
                assert {"feeds", "backlog"} <= set(after)
                # The victim's claimed mail goes out once its leases (10 s) expire.
                assert await asyncio.to_thread(arrivals.all_in.wait, 120), (
                    f"only {len(arrivals.seen)} of {TOTAL} arrived")
                for p, _ in survivors:
                    p.proc.terminate()
                assert all(p.finish(timeout=60) == 0 for p, _ in survivors)
                # A survivor took the victim's rows over when their leases expired.
                assert any("lease expired" in ln for p, _ in survivors for ln in p.lines)

    assert set(arrivals.seen) == {str(i) for i in range(1, TOTAL + 1)}
    duplicates = sum(arrivals.seen.values()) - TOTAL
    # Only mail in flight at the kill (sent, not yet recorded) can go twice.
    assert duplicates <= concurrency, f"{duplicates} duplicates"
    print(f"kill -9 of the leader: {duplicates} duplicates")  # noqa: T201


def _first_to_lead(survivors: list[tuple[DaemonProcess, str]], role: str) -> float:
    """The time the first survivor logged that it leads `role` (each read in a thread
    of its own: their logs come at once)."""
    found: list[float] = []
    done = threading.Event()

    def watch(p: DaemonProcess) -> None:
        try:
            found.append(_when_leading(p, role, within=3 * LEADER_TIMEOUT))
            done.set()
        except AssertionError:
            pass

    threads = [threading.Thread(target=watch, args=(p,), daemon=True) for p, _ in survivors]
    for t in threads:
        t.start()
    if not done.wait(timeout=3 * LEADER_TIMEOUT + 1):
        pytest.fail(f"no survivor took {role} over")
    return min(found)
