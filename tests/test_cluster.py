"""Several hosts on one PostgreSQL (issue 16), in one process: leadership by advisory
lock moves when its holder dies or is cut off, never two leaders at once, the hosts
share the send rate, and a throttle seen by one slows the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from jpixd.cluster import Cluster
from jpixd.loop import LEADER_ROLES as ROLES
from jpixd.metrics import Metrics
from tests.pgserver import needs_postgres

pytestmark = needs_postgres

TIMEOUT = timedelta(seconds=2)


def _clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def hosts(postgres_db: str) -> AsyncIterator[list[Cluster]]:
    made = [Cluster(postgres_db, None, leader_timeout=TIMEOUT, clock=_clock,
                    metrics=Metrics(CollectorRegistry()), host=f"host-{i}")
            for i in range(3)]
    await asyncio.gather(*(c.start() for c in made))
    try:
        yield made
    finally:
        await asyncio.gather(*(c.close() for c in made))


async def _until(hosts: list[Cluster], check: Callable[[], bool], within: float) -> None:
    """Wait until `check()` holds, looking after each host's beat (where leadership and
    host counts change), for at most `within` seconds."""
    end = time.monotonic() + within
    while not check():
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"not within {within}s")
        for h in hosts:
            h.beaten.clear()
        waits = [asyncio.create_task(h.beaten.wait()) for h in hosts]
        await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()


def _leaders(hosts: list[Cluster], role: str) -> list[str]:
    return [h.host for h in hosts if h.leads(role)]


async def test_each_role_has_one_leader_and_moves_when_it_dies(hosts: list[Cluster]) -> None:
    t = TIMEOUT.total_seconds()
    await _until(hosts, lambda: all(len(_leaders(hosts, r)) == 1 for r in ROLES),
                 within=2 * t)
    assert all(h.sharing == 3 for h in hosts)
    [leader] = [h for h in hosts if h.leads("feeds")]
    others = [h for h in hosts if h is not leader]

    # The leader's process dies: its connection closes, and with it its locks. Its
    # tasks stop at once (cancelled), as a killed process's would.
    assert leader._task is not None and leader._session is not None
    task = leader._task
    # A killed process beats no more. (A cancel that meets the end of a beat's wait_for
    # is swallowed on Python 3.11, and the task would beat on with a new session: the
    # dead host would count again. The flag is what close() sets for the same reason.)
    leader._leaving = True
    task.cancel()
    leader._session.end()
    died = time.monotonic()
    checks: list[int] = []

    def moved() -> bool:
        # Never two acting at once, at any moment we look.
        for role in ROLES:
            checks.append(len([h for h in others if h.leads(role)]))
        return all(len(_leaders(others, r)) == 1 for r in ROLES)

    await _until(others, moved, within=2 * t)
    took = time.monotonic() - died
    assert took <= t, f"roles moved after {took:.2f}s (leader_timeout {t}s)"
    assert max(checks) <= 1
    # The dead host stops counting for the send rate once its beat is leader_timeout old.
    await _until(others, lambda: all(h.sharing == 2 for h in others), within=4 * t)


async def test_a_leader_cut_off_stops_before_another_starts(hosts: list[Cluster],
                                                             postgres_db: str) -> None:
    """The server ends the leader's session (a network cut, a failover): the leader
    cannot know until its next beat fails, so the next leader waits out its trust."""
    t = TIMEOUT.total_seconds()
    await _until(hosts, lambda: all(len(_leaders(hosts, r)) == 1 for r in ROLES),
                 within=2 * t)
    [leader] = [h for h in hosts if h.leads("backlog")]
    admin = await asyncpg.connect(postgres_db)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = $1", f"jpixd-cluster {leader.host}")
    finally:
        await admin.close()
    overlap: list[int] = []
    stopped: list[bool] = []

    def settled() -> bool:
        now = _leaders(hosts, "backlog")
        overlap.append(len(now))
        stopped.append(not leader.leads("backlog"))
        # The cut-off host has noticed and stopped, and one host (another, or the same
        # one on a new session: whoever took the free lock first) leads again.
        return any(stopped) and len(now) == 1

    await _until(hosts, settled, within=2 * t)
    assert max(overlap) <= 1, "two hosts acted as the backlog leader at once"


async def test_a_throttle_on_one_host_slows_the_others(hosts: list[Cluster]) -> None:
    seen = [asyncio.Event() for _ in hosts]
    for h, ev in zip(hosts, seen, strict=True):
        h.on_throttle(ev.set)
    await hosts[0].report_throttle()
    await asyncio.wait_for(asyncio.gather(seen[1].wait(), seen[2].wait()),
                           timeout=TIMEOUT.total_seconds())
    assert not seen[0].is_set()  # the host that was throttled has slowed already


async def test_new_mail_and_a_pause_reach_every_host_at_once(hosts: list[Cluster],
                                                             postgres_db: str) -> None:
    """LISTEN/NOTIFY: a commit on one host is heard by the others between their beats."""
    from jpixd.fanout import Policy, planner
    from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, Subscriber
    from jpixd.store.pg.store import PgStore

    heard: list[tuple[str, str]] = []
    got = {what: asyncio.Event() for what in ("deliveries", "sending")}

    def listener(host: str) -> Callable[[str], None]:
        def on(what: str) -> None:
            heard.append((host, what))
            if {h for h, w in heard if w == what} == {c.host for c in hosts}:
                got[what].set()
        return on

    for h in hosts:
        h.on_notice(listener(h.host))
    store = await PgStore.open(postgres_db, pool_size=2)
    try:
        now = _clock()
        await store.create_subscriber(Subscriber(email="a@isp.example.jp"), now)
        notice = Notice(source="s", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                        status=NoticeStatus.IN_PROGRESS, title="故障")
        waited = time.monotonic()
        await store.record_revision(notice, revision="r1", change=Change.NEW, now=now,
                                    planner=planner(notice, Change.NEW, now, Policy(tz=JST)))
        await asyncio.wait_for(got["deliveries"].wait(), timeout=TIMEOUT.total_seconds())
        await store.set_sending(paused=True, reason="test", actor="admin", now=now)
        await asyncio.wait_for(got["sending"].wait(), timeout=TIMEOUT.total_seconds())
        # Well inside a beat interval: heard, not found at the next beat.
        assert time.monotonic() - waited < hosts[0].beat_every
    finally:
        await store.close()
