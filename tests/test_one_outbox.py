"""The one outbox (issue 24): self-service mail is a row of `deliveries`. A database made
before it (self-service mail in `self_mails`) is migrated with nothing lost: each mail
keeps its state, its claim and the events that name it, and goes on as any delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jpixd.fanout import Policy, planner
from jpixd.model import JST, Change, DeliveryState, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.selfmail import Limits
from jpixd.store import AnyStore, Store
from jpixd.store import migrate as lite_migrate
from jpixd.store.pg import migrate as pg_migrate
from jpixd.store.pg.store import PgStore
from tests.conftest import query_plan
from tests.pgserver import needs_postgres, postgres_server, postgres_url  # noqa: F401
from tests.sesnotes import record_bounce

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
LIMITS = Limits(per_mailbox_hour=3, per_hour=100, bounce_limit=10)


async def _old_database(store: AnyStore, before: list[lite_migrate.Migration]) -> int:
    """A database as the release before the one outbox left it: notice mail, and
    self-service mail of every state in `self_mails`. The subscriber's id."""
    await store.migrate(T0, before)
    sub = await store.create_subscriber(Subscriber(email="noc@isp.example.jp"), T0)
    assert sub.id is not None
    n = Notice(source="east", external_id="F-1", carrier="east", kind=NoticeKind.FAILURE,
               status=NoticeStatus.OCCURRED, title="通信障害（東京都）", body="調査中",
               prefectures=("東京都",), localities=(), starts_at=T0)
    await store.record_revision(n, revision="r1", change=Change.NEW, now=T0, key="k-F-1",
                                planner=planner(n, Change.NEW, T0, Policy(tz=JST)))
    rows = [  # (kind, email, state, attempts, not_before, claimed_by, lease, ses id): ids 1–5
        ("confirm", "new@isp.example.jp", "sent", 1, None, None, None, "ses-new@isp"),
        ("manage", "noc@isp.example.jp", "queued", 0, None, None, None, None),
        ("manage", "noc@isp.example.jp", "queued", 1, T0 + timedelta(minutes=5),
         None, None, None),
        ("confirm", "late@isp.example.jp", "queued", 1, None, "host-a",
         T0 - timedelta(minutes=1), None),
        ("confirm", "typo@isp.example.jp", "failed", 1, None, None, None, None),
    ]
    for kind, email, state, attempts, not_before, claimed_by, lease, ses in rows:
        await store._write(
            "INSERT INTO self_mails (kind, subscriber_id, email, mailbox, state, "
            "attempts, not_before, claimed_by, lease_until, ses_message_id, reason, "
            "created_at, sent_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, sub.id, email, email, state, attempts, not_before, claimed_by, lease,
             ses, "550 no such user" if state == "failed" else None, T0,
             T0 if state == "sent" else None, T0))
    # The confirmation that went out bounced: the event names its self_mails row.
    await store._write(
        "INSERT INTO mail_events (event_key, type, subtype, recipient, ses_message_id, "
        "counted_in_rate, occurred_at, received_at, raw, self_mail_id) "
        "VALUES ('fb-old', 'Bounce', 'General', 'new@isp.example.jp', 'ses-new@isp', "
        "?, ?, ?, '{}', 1)", (True, T0, T0))
    return sub.id


async def _check_moved(store: AnyStore, subscriber_id: int) -> None:
    outbox, _ = await store.list_deliveries(limit=100)
    assert [d.purpose for d in outbox] == ["notice", "confirm", "manage", "manage",
                                           "confirm", "confirm"]
    first_self = outbox[1].id
    assert first_self > outbox[0].id
    mails, total = await store.list_self_mails()
    assert total == 5
    by_email_state = [(m["email"], m["state"], m["attempts"]) for m in reversed(mails)]
    assert by_email_state == [
        ("new@isp.example.jp", "sent", 1), ("noc@isp.example.jp", "pending", 0),
        ("noc@isp.example.jp", "retry", 1), ("late@isp.example.jp", "sending", 1),
        ("typo@isp.example.jp", "failed", 1)]
    assert mails[0]["reason"] == "550 no such user"
    # The event names the moved row, and tells it apart as self-service mail.
    [event], _ = await store.list_events()
    assert event["delivery_id"] == event["self_mail_id"] == first_self
    assert (await store.self_mail_counts(T0 - timedelta(hours=1))) == (1, 1)
    # Its mailbox rests: no more of it to that address.
    mid, why = await store.queue_self_mail("confirm", subscriber_id, "new@isp.example.jp",
                                           T0, LIMITS, T0 - timedelta(hours=1))
    assert mid is None and why == "bounced_before"
    # The moved rows count in the mailbox's hourly limit (two asked for, one more now).
    mid, why = await store.queue_self_mail("manage", subscriber_id, "noc@isp.example.jp",
                                           T0, LIMITS, T0 - timedelta(hours=1))
    assert why is None and mid is not None and mid > max(m["id"] for m in mails)
    _, why = await store.queue_self_mail("manage", subscriber_id, "noc@isp.example.jp",
                                         T0, LIMITS, T0 - timedelta(hours=1))
    assert why == "rate_limited"
    # The sender claims what is due and what a dead host held, not what waits.
    claimed = await store.claim_self_mails(T0, 10, claimer="host-b",
                                           lease_until=T0 + timedelta(minutes=1))
    assert sorted(m.email for m in claimed) == ["late@isp.example.jp", "noc@isp.example.jp",
                                                "noc@isp.example.jp"]
    assert {m.attempts for m in claimed if m.email == "late@isp.example.jp"} == {2}
    # Never by the notice mail's claim.
    notice_claim, _ = await store.claim(T0 + timedelta(hours=1), 100, claimer="host-b",
                                        lease_until=T0 + timedelta(hours=2))
    assert [c.delivery.purpose for c in notice_claim] == ["notice"]


async def test_self_service_mail_moves_into_the_one_outbox_on_sqlite(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "old.sqlite3")
    try:
        version = _version_of(lite_migrate.bundled(), "one_outbox")
        sid = await _old_database(store, [m for m in lite_migrate.bundled()
                                          if m.version < version])
        # This migration, then those after it (they only change indexes), each once.
        assert await store.migrate(T0) == [m.version for m in lite_migrate.bundled()
                                           if m.version >= version]
        await _check_moved(store, sid)
        # The looser rules are the stored schema's: a row without a notice is taken, a
        # purpose outside the four is not.
        with pytest.raises(Exception, match="CHECK constraint failed"):
            await store._write("UPDATE deliveries SET purpose = 'nonsense'")
    finally:
        await store.close()


@needs_postgres
async def test_self_service_mail_moves_into_the_one_outbox_on_postgresql(
        postgres_url: str) -> None:  # noqa: F811
    store = await PgStore.open(postgres_url, pool_size=2)
    try:
        version = _version_of(pg_migrate.bundled(), "one_outbox")
        sid = await _old_database(store, [m for m in pg_migrate.bundled()
                                          if m.version < version])
        assert await store.migrate(T0) == [m.version for m in pg_migrate.bundled()
                                           if m.version >= version]
        await _check_moved(store, sid)
        # A notice's new mail is numbered after the moved rows (the identity goes on).
        sub = await store.create_subscriber(Subscriber(email="next@isp.example.jp"), T0)
        n = Notice(source="east", external_id="F-2", carrier="east",
                   kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED, title="障害",
                   body="調査中", prefectures=(), localities=(), starts_at=T0)
        await store.record_revision(n, revision="r1", change=Change.NEW, now=T0, key="k-F-2",
                                    planner=planner(n, Change.NEW, T0, Policy(tz=JST)))
        rows, _ = await store.list_deliveries(state=str(DeliveryState.PENDING), limit=100)
        assert sub.id in {d.subscriber_id for d in rows if d.notice_id is not None}
    finally:
        await store.close()


async def test_a_bounce_of_self_service_mail_is_judged_apart(tmp_path: Path) -> None:
    """After the move, an event is told apart by the delivery's purpose."""
    store = await Store.open(tmp_path / "new.sqlite3")
    try:
        await store.migrate(T0)
        mid, _ = await store.queue_self_mail("confirm", 1, "gone@bogus.example.net", T0,
                                             LIMITS, T0)
        assert mid is not None
        await store.mark_sent(mid, T0, transport="ses", message_id="<m>",
                              ses_message_id="ses-gone@bogus.example.net")
        await record_bounce(store, "gone@bogus.example.net", T0)
        [event], _ = await store.list_events()
        assert event["delivery_id"] == event["self_mail_id"] == mid
        assert await store.suppressed_count() == 0
        assert await store.guard_counts(T0 - timedelta(hours=1)) == (1, 0, 0)
    finally:
        await store.close()


def _version_of(migrations: list[lite_migrate.Migration], name: str) -> int:
    return next(m.version for m in migrations if m.name == name)


async def test_the_self_service_claim_reads_the_front_of_the_claims_index(
        tmp_path: Path) -> None:
    """Looked for every round: the few due self-service rows are read from the front of
    `deliveries_due` (their priority is below any notice mail's), not by a scan."""
    from jpixd.store.base import Step
    from jpixd.store.selfmail import _claim_plan

    store = await Store.open(tmp_path / "plan.sqlite3")
    try:
        await store.migrate(T0)
        plan = _claim_plan(T0, 5, "h", T0, skip_locked=store.skip_locked,
                           due_index=store.due_index)
        next(plan)  # the expired leases first; none here
        due = plan.send([])
        assert isinstance(due, Step)
        steps = await query_plan(tmp_path / "plan.sqlite3", due.sql, due.params)
        assert any("deliveries_due (priority=" in s for s in steps), steps
        assert not any("TEMP B-TREE" in s for s in steps), steps
    finally:
        await store.close()
