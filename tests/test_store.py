"""The store: migrations are idempotent and upgrade old databases; control state persists."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from jpixd.bounces.rules import Decision
from jpixd.store import AnyStore, Store
from jpixd.store import migrate as migrations
from jpixd.store.base import Plan, to_db
from tests.conftest import query_plan


async def _schema(path: Path) -> set[tuple[str, str]]:
    async with aiosqlite.connect(str(path)) as db, db.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ) as cur:
        return {(r[0], r[1]) for r in await cur.fetchall()}


async def test_migrations_are_idempotent(tmp_path: Path, now: datetime) -> None:
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        first = await store.migrate(now)
        assert first == [m.version for m in migrations.bundled()]
        assert await store.migrate(now) == []
        assert await store.schema_version() == first[-1]
    finally:
        await store.close()


@pytest.mark.parametrize("start", range(len(migrations.bundled())))
async def test_a_database_at_any_version_upgrades_to_the_latest(
        tmp_path: Path, now: datetime, start: int) -> None:
    all_migrations = migrations.bundled()
    fresh = tmp_path / "fresh.sqlite3"
    s = await Store.open(fresh)
    await s.migrate(now)
    await s.close()

    old = tmp_path / "old.sqlite3"
    s = await Store.open(old)
    try:
        await s.migrate(now, all_migrations[:start])
        assert await s.schema_version() == start
        applied = await s.migrate(now)
        assert applied == [m.version for m in all_migrations[start:]]
    finally:
        await s.close()
    assert await _schema(old) == await _schema(fresh)


async def test_a_newer_database_is_refused(tmp_path: Path, now: datetime) -> None:
    path = tmp_path / "new.sqlite3"
    s = await Store.open(path)
    await s.migrate(now)
    await s.close()
    async with aiosqlite.connect(str(path)) as db:
        await db.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                         "VALUES (999, 'future', 'x')")
        await db.commit()
    s = await Store.open(path)
    try:
        with pytest.raises(RuntimeError, match="newer than this program knows"):
            await s.migrate(now)
    finally:
        await s.close()


async def test_a_newer_database_that_only_added_is_run_on(tmp_path: Path,
                                                          now: datetime) -> None:
    """A newer release's migrations that say `-- older releases: compatible` (only
    additions) do not stop an older release: a rollback needs no restore. One that does
    not say so still does."""
    path = tmp_path / "new.sqlite3"
    s = await Store.open(path)
    await s.migrate(now)
    known = await s.schema_version()
    await s.close()
    async with aiosqlite.connect(str(path)) as db:
        await db.execute("CREATE TABLE added_later (id INTEGER PRIMARY KEY)")
        await db.execute("INSERT INTO schema_migrations (version, name, applied_at, older_ok) "
                         "VALUES (?, 'additive', 'x', 1)", (known + 1,))
        await db.commit()
    s = await Store.open(path)
    try:
        assert await s.migrate(now) == []  # nothing to do, nothing refused
        assert await s.schema_version() == known + 1
    finally:
        await s.close()
    async with aiosqlite.connect(str(path)) as db:
        await db.execute("INSERT INTO schema_migrations (version, name, applied_at, older_ok) "
                         "VALUES (?, 'breaking', 'x', 0)", (known + 2,))
        await db.commit()
    s = await Store.open(path)
    try:
        with pytest.raises(RuntimeError, match="1 of its newer migrations change"):
            await s.migrate(now)
    finally:
        await s.close()


async def test_the_database_is_in_wal_mode(sqlite_store: Store) -> None:
    async with aiosqlite.connect(str(sqlite_store.path)) as db, db.execute(
            "PRAGMA journal_mode") as cur:
        row = await cur.fetchone()
    assert row is not None and row[0] == "wal"


async def test_a_claim_reads_the_due_rows_in_order_instead_of_sorting_them_all(
        sqlite_store: Store, now: datetime) -> None:
    """SQLite's planner, without statistics, read the due rows through the state index
    and sorted all of them on every claim: 5 ms a claim at 20,000 due, more as the
    backlog grows. The claim names the partial index that holds them in its order."""
    from jpixd.store.base import Step
    from jpixd.store.deliveries import claim_plan

    plan = claim_plan(now, 400, "test", now, skip_locked=sqlite_store.skip_locked,
                      due_index=sqlite_store.due_index, text_of=sqlite_store.text_of)
    next(plan)  # the expired leases first; none here
    due = plan.send([])
    assert isinstance(due, Step)
    steps = await query_plan(sqlite_store.path, due.sql, due.params)
    assert any("deliveries_due" in s for s in steps), steps
    assert not any("TEMP B-TREE" in s for s in steps), steps


async def test_pause_and_resume_persist_and_resume_restarts_the_guard_window(
        tmp_path: Path, now: datetime) -> None:
    path = tmp_path / "p.sqlite3"
    s = await Store.open(path)
    await s.migrate(now)
    assert not (await s.sending_state()).paused
    await s.set_sending(paused=True, reason="bounce rate 4.2%", actor="guard", now=now)
    await s.close()

    s = await Store.open(path)
    try:
        state = await s.sending_state()
        assert state.paused and state.actor == "guard" and state.reason == "bounce rate 4.2%"
        assert state.window_start is None
        later = now + timedelta(hours=2)
        resumed = await s.set_sending(paused=False, reason=None, actor="admin", now=later)
        assert not resumed.paused
        assert resumed.window_start == later
        # A second resume while running does not move the window again.
        again = await s.set_sending(paused=False, reason=None, actor="admin",
                                    now=later + timedelta(hours=1))
        assert again.window_start == later
    finally:
        await s.close()


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.set_sending(paused=True, reason=None, actor="admin",
                                now=datetime(2026, 1, 1))


async def test_an_upgraded_database_with_mail_takes_the_shadow_state(
        tmp_path: Path, now: datetime) -> None:
    """Migration 0010 widens a CHECK by rewriting the stored schema (SQLite's documented
    way): a database from before it, with deliveries in it, takes `shadow` afterwards,
    keeps every row, and still refuses a state nobody defined."""
    from jpixd.model import Notice, NoticeKind, NoticeStatus, notice_to_json

    store = await Store.open(tmp_path / "old.sqlite3")
    try:
        bundled = migrations.bundled()
        before = [m for m in bundled if m.version < 10]
        await store.migrate(now, before)
        # Written as that schema holds it (today's columns are not there yet).
        await store._write("INSERT INTO subscribers (email, created_at, updated_at) "
                           "VALUES ('a@isp.example.jp', ?, ?)", (now, now))
        await store._write(
            "INSERT INTO notices (source, external_id, carrier, kind, status, title, "
            "revision, first_seen, last_changed, last_seen) VALUES "
            "('east', 'F1', 'east', 'failure', 'occurred', '故障', 'r1', ?, ?, ?)",
            (now, now, now))
        await store._write(
            "INSERT INTO notice_revisions (notice_id, revision, change, content, mailed, "
            "seen_at) VALUES (1, 'r1', 'new', ?, 1, ?)", (json.dumps(notice_to_json(Notice(
                source="east", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                status=NoticeStatus.OCCURRED, title="故障"))), now))
        await store._write(
            "INSERT INTO deliveries (revision_id, notice_id, subscriber_id, email, purpose, "
            "slot, priority, state, not_before, created_at, updated_at, first_due_at) "
            "VALUES (1, 1, 1, 'a@isp.example.jp', 'notice', '', 0, 'pending', ?, ?, ?, ?)",
            (now, now, now, now))
        assert await store.migrate(now) == [m.version for m in bundled if m.version >= 10]
        [claimed], _ = await store.claim(now, 10, claimer="test",
                                         lease_until=now + timedelta(minutes=2))
        await store.mark_shadow(claimed.delivery.id, now, subject="s", message=b"m",
                                charset="utf-8")
        [d], _ = await store.list_deliveries()
        assert str(d.state) == "shadow"
        with pytest.raises(Exception, match="CHECK constraint failed"):
            await store._write("UPDATE deliveries SET state = 'nonsense'")
    finally:
        await store.close()


async def test_soft_bounces_recorded_before_migration_12_still_count(
        tmp_path: Path, now: datetime) -> None:
    """Migration 0012 flags soft bounces already recorded (the rule moved from a SQL
    pattern to jpixd.bounces.rules): an address's earlier Transient bounce still counts
    towards its window after the upgrade."""
    from jpixd.bounces.parse import parse
    from jpixd.config import BouncesConfig
    from tests.sesnotes import bounce, sns

    store = await Store.open(tmp_path / "old.sqlite3")
    try:
        bundled = migrations.bundled()
        await store.migrate(now, [m for m in bundled if m.version < 12])
        await store._write(
            "INSERT INTO mail_events (event_key, type, subtype, recipient, occurred_at, "
            "received_at, raw) VALUES ('old', 'Bounce', 'Transient/MailboxFull', "
            "'a@isp.example.jp', ?, ?, '{}')", (to_db(now), to_db(now)))
        assert await store.migrate(now) == [m.version for m in bundled if m.version >= 12]
        body = sns(bounce(["a@isp.example.jp"], btype="Transient", sub="MailboxFull",
                          feedback="fb-new", timestamp=now.isoformat().replace("+00:00", "Z")),
                   message_id="sns-new")
        events, _ = parse(body)
        counts: list[int] = []

        def decide(_e: object, soft: int, _own: bool) -> Decision:
            counts.append(soft)
            return Decision()

        await store.record_events(events, now, decide=decide,
                                  soft_window=BouncesConfig().soft_bounce_window)
        assert counts == [2]  # the old one and this one
    finally:
        await store.close()


async def test_two_imports_of_the_same_file_at_once_create_each_subscriber_once(
        store: Store, now: datetime) -> None:
    """Two hosts starting on an empty database both seed the same subscribers (or two
    operators import one file): the second finds the first's rows, unchanged."""
    from jpixd.model import Subscriber
    from jpixd.subscribers import FIELDS

    rows = [(Subscriber(email=f"u{i}@isp.example.jp"), frozenset(FIELDS)) for i in range(50)]
    a, b = await asyncio.gather(store.import_subscribers(rows, now),
                                store.import_subscribers(rows, now))
    assert sorted([a.created, b.created]) == [0, 50]
    assert sorted([a.unchanged, b.unchanged]) == [0, 50]
    assert (await store.list_subscribers(limit=1))[1] == 50


async def test_a_plan_runs_alike_on_both_databases(store: AnyStore) -> None:
    """Issue 24, part 3: a transaction written once as a plan. A failing statement is
    thrown into the plan, which can roll back to a savepoint and go on; one the plan does
    not handle rolls the whole transaction back."""
    from collections.abc import Generator

    from jpixd.store.base import Step

    def plan(handle: bool) -> Generator[Step, Any, int]:
        yield Step("INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?)",
                   ("plan-test", '"1"', datetime(2026, 12, 6, tzinfo=UTC)), rows=False)
        yield Step("SAVEPOINT a", rows=False)
        try:
            yield Step("SELECT * FROM no_such_table")
        except Exception:
            if not handle:
                raise
            yield Step("ROLLBACK TO SAVEPOINT a", rows=False)
        yield Step("RELEASE SAVEPOINT a", rows=False)
        rows = yield Step("SELECT COUNT(*) AS n FROM control WHERE key = ?", ("plan-test",))
        return int(rows[0]["n"])

    with pytest.raises(Exception, match="no_such_table"):
        await store.run_plan(plan(handle=False))
    assert await store.run_plan(plan(handle=True)) == 1  # the first left nothing behind


async def test_a_fan_out_stores_each_delivery_as_planned(store: AnyStore) -> None:
    """Issue 24: a revision's deliveries are written in bulk (SQLite one INSERT over a
    JSON array of them, PostgreSQL COPY): every value arrives as the plan made it, an
    address with a quote and non-ASCII text, the windows' times and the reminders' slots
    among them."""
    from zoneinfo import ZoneInfo

    from jpixd.fanout import Policy, planner
    from jpixd.model import Change, Notice, NoticeKind, NoticeStatus, Subscriber
    from jpixd.subscribers import FIELDS

    now = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo: late night
    emails = ["o'brien@example.jp", "tanaka.\u592a\u90ce@example.jp", "day@example.jp"]
    await store.import_subscribers([
        (Subscriber(email=e, windows=("day",) if e.startswith("day") else
                    ("day", "night", "late_night")), frozenset(FIELDS)) for e in emails], now)
    notice = Notice(source="east", external_id="K1", carrier="east",
                    kind=NoticeKind.CONSTRUCTION, status=NoticeStatus.SCHEDULED, title="工事",
                    starts_at=now + timedelta(days=3), ends_at=now + timedelta(days=3, hours=4),
                    prefectures=("13",))
    plan = planner(notice, Change.NEW, now, Policy(tz=ZoneInfo("Asia/Tokyo")))
    result = await store.record_revision(notice, revision="r1", change=Change.NEW, now=now,
                                         planner=plan)
    assert (result.deliveries, result.reminders) == (3, 3)
    stored, _ = await store.list_deliveries(notice_id=result.notice_id)
    ids = {s.email: s.id for s in (await store.list_subscribers(limit=10))[0]}
    day = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo, the day window opens
    reminder = now + timedelta(days=2)  # a day before the work, in the late-night window
    reminder_for_day = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
    assert sorted((d.email, d.subscriber_id, d.purpose, d.slot, d.priority, d.not_before,
                   str(d.state), d.revision_id) for d in stored) == sorted([
        *[(e, ids[e], "notice", "", 10, day if e.startswith("day") else now, "pending",
           result.revision_id) for e in emails],
        *[(e, ids[e], "reminder", "86400s", 20,
           reminder_for_day if e.startswith("day") else reminder, "pending",
           result.revision_id) for e in emails]])


async def test_a_group_of_sent_mail_is_recorded_row_by_row_as_given(
        store: AnyStore) -> None:
    """The sender's group commit, on both databases: each row gets its own ids, a
    missing SES id stays NULL, text with quotes and non-ASCII arrives whole, rows outside
    the group are untouched."""
    from jpixd.fanout import Policy, planner
    from jpixd.model import JST, Change, DeliveryState, Notice, NoticeKind, NoticeStatus, Subscriber
    from jpixd.subscribers import FIELDS

    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    await store.import_subscribers([(Subscriber(email=f"g{i}@example.jp"), frozenset(FIELDS))
                                    for i in range(4)], now)
    notice = Notice(source="east", external_id="G1", carrier="east",
                    kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED, title="故障")
    await store.record_revision(notice, revision="r1", change=Change.NEW, now=now,
                                planner=planner(notice, Change.NEW, now, Policy(tz=JST)))
    claimed, _ = await store.claim(now, 10, claimer="t", lease_until=now)
    first, second, third, rest = sorted(c.delivery.id for c in claimed)
    later = now + timedelta(seconds=5)
    await store.mark_sent_many([(first, "ses", "<jpixd.1@example.jp>", "0101-a"),
                                (second, "smtp", "<o'q\u00e9>", None),
                                (third, "ses", "<jpixd.3@example.jp>", "0101-c")], later)
    got = {d.id: d for d in (await store.list_deliveries())[0]}
    assert [(got[i].state, got[i].message_id, got[i].ses_message_id, got[i].sent_at)
            for i in (first, second, third)] == [
        (DeliveryState.SENT, "<jpixd.1@example.jp>", "0101-a", later),
        (DeliveryState.SENT, "<o'q\u00e9>", None, later),
        (DeliveryState.SENT, "<jpixd.3@example.jp>", "0101-c", later)]
    assert got[rest].state == DeliveryState.SENDING and got[rest].message_id is None
    transports = {r["id"]: r["transport"] for r in await store._all(
        "SELECT id, transport FROM deliveries")}
    assert [transports[i] for i in (first, second, third, rest)] == ["ses", "smtp", "ses",
                                                                     None]


async def test_the_console_chart_counts_each_utc_hour_alike_on_both_databases(
        store: AnyStore) -> None:
    """The chart's hours are UTC hours as text on both databases (SQLite reads them off
    its stored text, PostgreSQL formats its timestamptz)."""
    from tests.sesnotes import record_bounce, sent_to

    first = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)
    await sent_to(store, first, "a@example.jp", "b@example.jp")
    await record_bounce(store, "a@example.jp", first + timedelta(seconds=2))
    assert await store.hourly_activity(first - timedelta(days=1)) == {
        "2026-12-01T23": {"sent": 2}, "2026-12-02T00": {"bounce": 1}}
    assert await store.hourly_activity(first + timedelta(seconds=1)) == {
        "2026-12-02T00": {"bounce": 1}}


async def test_a_fan_out_reaches_the_audience_as_it_is_now(
        store: AnyStore, tmp_path: Path, backend_url: str | None) -> None:
    """The audience a fan-out parsed is kept between fan-outs, but never past a change to
    the subscribers, made by this process or another (a CLI import beside the daemon, or
    another host): someone who left gets nothing more, someone new gets the next report."""
    from dataclasses import replace

    from jpixd.fanout import Policy, planner
    from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, Subscriber
    from jpixd.subscribers import FIELDS
    from tests.conftest import open_store_at

    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    notice = Notice(source="east", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                    status=NoticeStatus.OCCURRED, title="故障")

    async def report(n: int) -> set[str]:
        version = replace(notice, title=f"故障（第{n}報）")
        change = Change.NEW if n == 1 else Change.UPDATE
        result = await store.record_revision(
            version, revision=f"r{n}", change=change, now=now,
            planner=planner(version, change, now, Policy(tz=JST)))
        rows, _ = await store.list_deliveries(notice_id=result.notice_id, state="pending")
        return {d.email for d in rows if d.revision_id == result.revision_id}

    first = await store.create_subscriber(Subscriber(email="first@example.jp"), now)
    assert await report(1) == {"first@example.jp"}
    assert await report(2) == {"first@example.jp"}  # from the kept audience
    await store.create_subscriber(Subscriber(email="second@example.jp"), now)
    assert first.id is not None
    await store.delete_subscriber(first.id, now, actor="test")
    assert await report(3) == {"second@example.jp"}
    beside = await open_store_at(backend_url, tmp_path / "db" / "jpixd.sqlite3")
    try:
        await beside.import_subscribers([(Subscriber(email="third@example.jp"),
                                          frozenset(FIELDS))], now)
    finally:
        await beside.close()
    assert await report(4) == {"second@example.jp", "third@example.jp"}


async def test_many_rows_at_once_are_all_written_and_a_time_reads_back_as_given(
        store: AnyStore, now: datetime) -> None:
    """`Insert` (a fan-out's rows): more rows than one statement takes on SQLite (its
    bound-value limit) are all written, and a time given as a datetime, not as its stored
    text, reads back as the same time on either database."""
    from jpixd.store.base import Insert, from_db

    # Two columns a row and one shared: SQLite takes 16,382 such rows to a statement.
    rows = [(f"bench-{i}", str(i)) for i in range(20000)]  # `value` is JSON (jsonb)
    async with store.transaction() as tx:
        await tx.insert(Insert("control", {"updated_at": now}, ("key", "value"), rows))
        await tx.insert(Insert("control", {"value": '"t"'}, ("key", "updated_at"),
                               [("a-time", now + timedelta(seconds=1))]))
        await tx.insert(Insert("control", {}, ("key", "value", "updated_at"),
                               [("nothing-shared", '"n"', now)]))
    got = await store._all("SELECT key, value, updated_at FROM control "
                           "WHERE key LIKE 'bench-%' OR key = 'a-time' ORDER BY key")
    assert len(got) == 20001
    # The shared value reaches every row, in every statement SQLite needed for them.
    assert {from_db(r["updated_at"]) for r in got if r["key"] != "a-time"} == {now}
    alone = await store._one("SELECT updated_at FROM control WHERE key = 'nothing-shared'")
    assert alone is not None and from_db(alone["updated_at"]) == now
    assert {r["value"] for r in got if r["key"] != "a-time"} == {str(i) for i in range(20000)}
    [when] = [r["updated_at"] for r in got if r["key"] == "a-time"]
    assert from_db(when) == now + timedelta(seconds=1)
    if isinstance(store, Store):  # SQLite's text: the fixed-width form every time has
        assert when == to_db(now + timedelta(seconds=1))


async def test_rows_given_a_part_at_a_time_are_all_written_or_none(
        store: AnyStore, now: datetime) -> None:
    """`Insert.parts` (a fan-out's rows worked out a part at a time; PostgreSQL works out
    the next while COPY sends one): every row of every part is written, parts with no
    rows among them; no part with rows writes nothing; a part whose working out fails
    fails the transaction with its own error and leaves nothing behind."""
    from jpixd.store.base import Insert

    def parts(*sizes: int, failing: bool = False) -> list[Callable[[], list[tuple[str, str]]]]:
        def part(n: int, size: int) -> Callable[[], list[tuple[str, str]]]:
            return lambda: [(f"part-{n + i}", str(n + i)) for i in range(size)]

        def fail() -> list[tuple[str, str]]:
            raise ValueError("the matching failed")

        made = [part(sum(sizes[:k]), size) for k, size in enumerate(sizes)]
        return [*made, fail] if failing else made

    async def keys() -> list[str]:
        return [r["key"] for r in await store._all(
            "SELECT key FROM control WHERE key LIKE 'part-%' ORDER BY key")]

    async with store.transaction() as tx:
        await tx.insert(Insert("control", {"updated_at": now}, ("key", "value"),
                               parts=parts(0, 0)))
    assert await keys() == []
    with pytest.raises(ValueError, match="the matching failed"):
        async with store.transaction() as tx:
            await tx.insert(Insert("control", {"updated_at": now}, ("key", "value"),
                                   parts=parts(3, 4, failing=True)))
    assert await keys() == []
    async with store.transaction() as tx:
        await tx.insert(Insert("control", {"updated_at": now}, ("key", "value"),
                               parts=parts(0, 3, 0, 4, 1)))
    assert await keys() == sorted(f"part-{i}" for i in range(8))
    # More rows than SQLite takes in one statement (16,382 of these), its statements
    # cutting across parts, and in a plan, as a fan-out gives them.

    def plan(*sizes: int, failing: bool = False) -> Plan[None]:
        yield Insert("control", {"updated_at": now}, ("key", "value"),
                     parts=parts(*sizes, failing=failing))

    await store._write("DELETE FROM control WHERE key LIKE 'part-%'")
    with pytest.raises(ValueError, match="the matching failed"):
        await store.run_plan(plan(9000, 9000, failing=True))
    assert await keys() == []
    await store.run_plan(plan(9000, 0, 9000, 9000, 1))
    assert await keys() == sorted(f"part-{i}" for i in range(27001))


async def test_a_fan_out_worked_out_in_parts_reaches_everyone_once(
        store: AnyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audience is matched a part at a time (`FANOUT_PART`, 10,000 subscribers): with
    parts of two, a fan-out and the next revision's (from the audience kept between
    them) give each matching subscriber its mail once, and leave out the suppressed and
    the subscriber who did not ask for this carrier, wherever the parts cut."""
    from jpixd.model import Change, Subscriber
    from jpixd.store import notices
    from jpixd.subscribers import FIELDS
    from tests.sesnotes import record_bounce, record_failure

    monkeypatch.setattr(notices, "FANOUT_PART", 2)
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    await store.import_subscribers(
        [(Subscriber(email=f"p{i}@example.jp", carriers=("west",) if i == 3 else ("east",)),
          frozenset(FIELDS)) for i in range(7)], now)
    await record_bounce(store, "p5@example.jp", now)
    assert await store.is_suppressed("p5@example.jp")
    wanted = [f"p{i}@example.jp" for i in (0, 1, 2, 4, 6)]
    for revision, change in (("r1", Change.NEW), ("r2", Change.UPDATE)):
        result = await record_failure(store, now, "P1", revision=revision, change=change,
                                      carrier="east")
        assert result.deliveries == len(wanted)
        mail, _ = await store.list_deliveries(notice_id=result.notice_id, state="pending")
        assert sorted(d.email for d in mail) == wanted
        assert {d.revision_id for d in mail} == {result.revision_id}
    assert result.superseded == len(wanted)


async def test_the_oldest_waiting_mail_is_found_in_every_state_it_can_wait_in(
        store: AnyStore) -> None:
    """The stalled-mail monitor's figure, now read through the claim's index (and the
    state, for mail in flight) instead of an index of its own: a mail claimed, a mail
    retrying since long before its next attempt, and mail due later than now, on both
    databases."""
    from jpixd.model import DeliveryState, Subscriber
    from tests.sesnotes import record_failure

    t0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    await store.create_subscriber(Subscriber(email="noc@isp.example.jp"), t0)
    for minutes in (0, 10, 20):  # a failure each, due at once: first due at t0, +10, +20
        await record_failure(store, t0 + timedelta(minutes=minutes), f"F{minutes}")
    now = t0 + timedelta(minutes=30)
    assert await store.oldest_pending_age(t0 - timedelta(minutes=1)) == 0
    assert await store.oldest_pending_age(now) == 1800
    [claimed], _ = await store.claim(now, 1, claimer="test",
                                     lease_until=now + timedelta(minutes=5))
    first = claimed.delivery
    assert (await store.delivery_counts())[DeliveryState.SENDING] == 1
    assert await store.oldest_pending_age(now) == 1800  # in flight, still unsent
    await store.mark_retry(first.id, now, now + timedelta(hours=2), "451 later")
    assert await store.oldest_pending_age(now) == 1800  # its next try is later, not its age
    await store.mark_final(first.id, now, DeliveryState.FAILED, "gave up")
    assert await store.oldest_pending_age(now) == 1200
    # A mail not due yet has not waited: at +15 only the one due at +10 has.
    assert await store.oldest_pending_age(t0 + timedelta(minutes=15)) == 300


async def test_the_stalled_mail_monitor_reads_indexes_not_the_table(
        sqlite_store: Store, now: datetime) -> None:
    """Run every few seconds over an outbox that may hold a whole fan-out: its figure
    must come from the waiting rows, found by the claim's index (8 ms for 76,000 of them),
    and the rows in flight, never from a scan of every delivery ever kept."""
    from jpixd.store.deliveries import oldest_waiting_sql

    steps = await query_plan(sqlite_store.path, oldest_waiting_sql(sqlite_store.due_index),
                             (now, now))
    searches = [s for s in steps if "deliveries" in s]
    assert len(searches) == 2, steps
    assert "INDEX deliveries_due" in searches[0], steps
    assert all(s.startswith("SEARCH") and "INDEX" in s for s in searches), steps
