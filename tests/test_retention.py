"""Data kept and pruned on purpose (issue 13): history older than its retention goes, in
small batches; what something still points at stays."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry

from jpixd.config import BouncesConfig, RetentionConfig
from jpixd.fanout import Policy, planner
from jpixd.housekeeping import HousekeepingLoop
from jpixd.mail.outbound import SendingSwitch
from jpixd.metrics import Metrics
from jpixd.model import JST, Change, NoticeStatus
from jpixd.store import Store
from tests.sesnotes import record_bounce, sent_to

OLD = datetime(2025, 1, 10, 12, 0, tzinfo=JST)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=JST)


async def test_old_history_is_pruned_and_what_is_pointed_at_stays(store: Store) -> None:
    await sent_to(store, OLD, *(f"u{i}@isp.example.jp" for i in range(3)))
    [stored], _ = await store.list_notices()
    # A second revision of the notice, so that the first is superseded.
    newer = replace(stored.notice, status=NoticeStatus.RECOVERED)
    await store.record_revision(newer, revision="r2", change=Change.RECOVER, now=OLD,
                                planner=planner(newer, Change.RECOVER, OLD, Policy(tz=JST)))
    await record_bounce(store, "u0@isp.example.jp", OLD)  # suppresses u0: its event stays
    await store.quarantine(origin="sqs", ref="m", reason="r", payload="p", now=OLD)
    await store.quarantine(origin="sqs", ref="n", reason="r", payload="p", now=NOW)

    metrics = Metrics(CollectorRegistry())
    house = HousekeepingLoop(store, metrics, lambda: NOW, SendingSwitch(store, metrics),
                             bounces=BouncesConfig(), retention=RetentionConfig())
    pruned = await house.prune(NOW)
    # Two of the first revision's sent deliveries go, and the second revision's delivery
    # to u0 (skipped when u0 was suppressed); u0's sent one is named by the bounce event,
    # which the suppression names: both stay.
    assert pruned["deliveries"] == 3 and pruned["events"] == 0 and pruned["quarantine"] == 1
    assert pruned["revisions"] == 0  # the first revision still has a delivery
    [q] = await store.quarantined()
    assert q["ref"] == "n"
    assert len(await store.revisions(stored.id)) == 2
    # Lift the suppression and end its Backlog case (as the reconciler does once the issue
    # is closed): the event may go, then its delivery, then the old revision.
    await store.lift_suppression("u0@isp.example.jp", by="admin", now=NOW)
    [case], _ = await store.list_tickets()
    await store.ticket_ended(case.id, "closed", NOW)
    again = await house.prune(NOW + timedelta(hours=1))
    assert again["events"] == 1 and again["deliveries"] >= 1 and again["revisions"] == 1
    revisions = await store.revisions(stored.id)
    assert [r.revision for r in revisions] == ["r2"]  # the current one is kept


async def test_pruning_goes_in_small_batches(store: Store) -> None:
    for i in range(25):
        await store.quarantine(origin="feed", ref=f"x{i}", reason="r", payload="p", now=OLD)
    first = await store.prune({"quarantine": NOW}, batch=10, max_batches=2)
    assert first.counts["quarantine"] == 20  # two batches of ten, the rest next time
    second = await store.prune({"quarantine": NOW}, batch=10, max_batches=2)
    assert second.counts["quarantine"] == 5


async def test_unconfirmed_sign_ups_and_shadow_mail_are_pruned(store: Store) -> None:
    from jpixd.model import Subscriber, SubscriberStatus

    stale, _ = await store.signup(Subscriber(email="typo@isp.example.jp"), OLD)
    fresh, _ = await store.signup(Subscriber(email="new@isp.example.jp"), NOW)
    active = await store.create_subscriber(
        Subscriber(email="old@isp.example.jp", status=SubscriberStatus.ACTIVE), OLD)
    # A shadow run's kept mail, old: pruned with its rendered message.
    await sent_to(store, OLD, "shadowed@isp.example.jp")
    [d] = [x for x in (await store.list_deliveries(state="sent"))[0]
           if x.email == "shadowed@isp.example.jp"]
    await store._write("UPDATE deliveries SET state = 'sending' WHERE id = ?", (d.id,))
    await store.mark_shadow(d.id, OLD, subject="s", message=b"m", charset="utf-8")
    metrics = Metrics(CollectorRegistry())
    house = HousekeepingLoop(store, metrics, lambda: NOW, SendingSwitch(store, metrics),
                             bounces=BouncesConfig(), retention=RetentionConfig())
    pruned = await house.prune(NOW)
    assert pruned["pending_subscribers"] == 1 and pruned["deliveries"] >= 1
    assert await store.get_subscriber(stale.id or 0) is None
    assert await store.subscriber_changes(stale.id or 0) == []  # its record went with it
    assert await store.subscriber_by_email("new@isp.example.jp") is not None  # within 7 days
    assert await store.get_subscriber(active.id or 0) is not None  # confirmed: kept
    assert await store.shadow_mail() == []  # the old shadow delivery and its message
    assert fresh.id is not None and await store.subscriber_changes(fresh.id)
