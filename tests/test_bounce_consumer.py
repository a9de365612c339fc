"""The SQS consumer against moto's SNS and SQS: a topic subscribed by a queue, as SES sets
it up; real SES-shaped notifications published to the topic, raw ones sent straight to the
queue. Each leads to the right suppression and state, and the queue ends empty."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp import web
from prometheus_client import CollectorRegistry

from jpixd.awsclients import client_config
from jpixd.bounces.consumer import BounceConsumer
from jpixd.config import BouncesConfig, RetentionConfig
from jpixd.housekeeping import HousekeepingLoop
from jpixd.mail.outbound import SendingSwitch
from jpixd.metrics import Metrics
from jpixd.model import DeliveryState
from jpixd.store import Store
from tests.awsproxy import forward, proxying
from tests.conftest import reopen
from tests.sesnotes import bounce, complaint, delivery, record_bounce, sent_to

NOW = datetime(2026, 11, 28, 6, 30, tzinfo=UTC)


@dataclass
class Queue:
    sqs: Any
    sns: Any
    url: str
    topic: str

    async def publish(self, ses: dict[str, Any]) -> None:
        await self.sns.publish(TopicArn=self.topic, Message=json.dumps(ses, ensure_ascii=False))

    async def send_raw(self, body: str) -> None:
        await self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    async def depth(self) -> int:
        attrs = await self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        a = attrs["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + \
            int(a["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
async def queue(moto_url: str) -> AsyncIterator[Queue]:
    session = get_session()
    kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": moto_url}
    async with session.create_client("sqs", **kw) as sqs, \
            session.create_client("sns", **kw) as sns_client:
        name = f"ses-events-{uuid.uuid4().hex[:8]}"
        url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
               )["Attributes"]["QueueArn"]
        topic = (await sns_client.create_topic(Name=name))["TopicArn"]
        await sns_client.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield Queue(sqs, sns_client, url, topic)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def consumer(q: Queue, store: Store, registry: CollectorRegistry,
             cfg: BouncesConfig | None = None, now: list[datetime] | None = None,
             file_cases: bool = True) -> BounceConsumer:
    clock = now or [NOW]
    # A one-second long poll: the tests' queue answers at once when it has messages.
    cfg = replace(cfg or BouncesConfig(queue_url=q.url), wait_time=timedelta(seconds=1))
    metrics = Metrics(registry)
    return BounceConsumer(q.sqs, cfg, store, metrics, lambda: clock[0],
                          SendingSwitch(store, metrics), file_cases=file_cases)


async def drain(c: BounceConsumer, q: Queue) -> None:
    for _ in range(20):
        await c.run_once()
        if await q.depth() == 0:
            return
    raise AssertionError("queue not drained")


def metric(r: CollectorRegistry, name: str, **labels: str) -> float:
    return r.get_sample_value(name, labels) or 0.0


async def test_permanent_bounce_through_sns_suppresses_and_correlates(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    await sent_to(store, NOW, "gone@isp.example.jp", "ok@isp.example.jp")
    await queue.publish(bounce(["gone@isp.example.jp"], message_id="ses-gone@isp.example.jp"))
    await drain(consumer(queue, store, registry), queue)
    [s], _ = await store.list_suppressions()
    assert s["email"] == "gone@isp.example.jp"
    assert s["reason"] == "permanent bounce (Permanent/General)"
    [event], _ = await store.list_events()
    assert event["type"] == "Bounce" and event["delivery_id"] is not None
    sub = (await store.list_subscribers(email="gone@isp.example.jp"))[0][0]
    assert sub.status == "suppressed"
    assert metric(registry, "jpixd_sqs_messages_total", result="processed") == 1
    assert metric(registry, "jpixd_mail_events_total", type="Bounce",
                  subtype="Permanent/General") == 1
    assert await queue.depth() == 0


async def test_the_same_notification_three_times_is_one_event(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    note = bounce(["dup@isp.example.jp"], feedback="fb-dup")
    for _ in range(3):
        await queue.publish(note)  # three SNS deliveries of the same SES notification
    await drain(consumer(queue, store, registry), queue)
    assert (await store.list_events())[1] == 1
    assert metric(registry, "jpixd_sqs_messages_total", result="duplicate") == 2


async def test_one_garbage_message_in_a_batch(queue: Queue, store: Store,
                                              registry: CollectorRegistry) -> None:
    for i in range(9):
        await queue.send_raw(json.dumps(delivery([f"d{i}@isp.example.jp"],
                                                 message_id=f"ses-d{i}")))
    await queue.send_raw("{this is not json")
    await drain(consumer(queue, store, registry), queue)
    assert (await store.list_events())[1] == 9
    [q] = await store.quarantined("sqs")
    assert q["payload"] == "{this is not json" and str(q["reason"]).startswith("body is not")
    assert metric(registry, "jpixd_sqs_messages_total", result="processed") == 9
    assert metric(registry, "jpixd_sqs_messages_total", result="quarantined") == 1
    assert await queue.depth() == 0


async def test_complaints_unsubscribe_and_soft_bounces_suppress_at_the_limit(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    await sent_to(store, NOW, "angry@isp.example.jp", "full@isp.example.jp")
    await queue.publish(complaint(["angry@isp.example.jp"]))
    for i in range(3):
        await queue.send_raw(json.dumps(bounce(["full@isp.example.jp"], "Transient",
                                               "MailboxFull", feedback=f"soft-{i}",
                                               event=True)))
    c = consumer(queue, store, registry)
    await drain(c, queue)
    angry = (await store.list_subscribers(email="angry@isp.example.jp"))[0][0]
    assert angry.status == "unsubscribed"
    reasons = {s["email"]: s["reason"] for s in (await store.list_suppressions())[0]}
    assert reasons == {"angry@isp.example.jp": "complaint (abuse)",
                       "full@isp.example.jp": "3 soft bounces within 7 days "
                                              "(Transient/MailboxFull)"}


async def test_lifting_a_suppression_says_so_on_the_open_ticket(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    await sent_to(store, NOW, "lift@isp.example.jp")
    await queue.publish(bounce(["lift@isp.example.jp"], feedback="lift-1"))
    await drain(consumer(queue, store, registry), queue)
    # The bounce opened a Backlog case for the address (issue 7's reconciler files it).
    [ticket], _ = await store.list_tickets(email="lift@isp.example.jp")
    assert (ticket.kind, ticket.state) == ("bounce", "intent")
    assert await store.lift_suppression("lift@isp.example.jp", by="admin", now=NOW)
    assert (await store.ticket_counts())["comments_pending"] == 1
    sub = (await store.list_subscribers(email="lift@isp.example.jp"))[0][0]
    assert sub.status == "active"
    assert await store.is_suppressed("lift@isp.example.jp") is False


async def test_without_backlog_no_cases_are_recorded(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    await sent_to(store, NOW, "nb@isp.example.jp")
    await queue.publish(bounce(["nb@isp.example.jp"], feedback="nb-1"))
    await drain(consumer(queue, store, registry, file_cases=False), queue)
    assert (await store.list_events())[1] == 1 and await store.is_suppressed("nb@isp.example.jp")
    assert (await store.list_tickets())[1] == 0  # nothing piles up for a later [backlog]


async def test_an_unexpected_topic_is_quarantined(queue: Queue, store: Store,
                                                  registry: CollectorRegistry) -> None:
    await queue.publish(bounce(["x@isp.example.jp"]))
    cfg = BouncesConfig(queue_url=queue.url, expected_topic_arns=("arn:aws:sns:x:1:other",))
    await drain(consumer(queue, store, registry, cfg), queue)
    assert (await store.list_events())[1] == 0
    [q] = await store.quarantined("sqs")
    assert "is not one we expect" in str(q["reason"])


async def test_a_redelivery_after_commit_without_delete_is_a_duplicate(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    await queue.publish(bounce(["r@isp.example.jp"], feedback="fb-r"))
    c = consumer(queue, store, registry)
    # As if the process died between the commit and the delete: record, do not delete.
    resp = await queue.sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=1,
                                           VisibilityTimeout=0)
    [m] = resp["Messages"]
    await c._handle_batch([m])
    await drain(c, queue)  # the message comes again
    assert (await store.list_events())[1] == 1
    assert metric(registry, "jpixd_sqs_messages_total", result="duplicate") == 1


async def test_the_guard_trips_stays_tripped_and_resume_starts_afresh(
        queue: Queue, store: Store, registry: CollectorRegistry, tmp_path: Path) -> None:
    emails = [f"g{i}@isp.example.jp" for i in range(200)]
    await sent_to(store, NOW, *emails)
    now = [NOW + timedelta(minutes=5)]
    cfg = BouncesConfig(queue_url=queue.url)
    c = consumer(queue, store, registry, cfg, now)
    for i, e in enumerate(emails[:7]):  # 3.5 %: a warning, not yet a pause
        await queue.publish(bounce([e], feedback=f"g-{i}"))
    await drain(c, queue)
    assert not (await store.sending_state()).paused
    assert metric(registry, "jpixd_bounce_rate") == pytest.approx(7 / 200)
    for i, e in enumerate(emails[7:8]):  # 8 of 200 = 4 %: pause
        await queue.publish(bounce([e], feedback=f"g2-{i}"))
    await queue.publish(complaint([emails[100]], feedback="g-c"))
    await drain(c, queue)
    state = await store.sending_state()
    assert state.paused and state.actor == "guard"
    assert state.reason and "bounce rate 4.00% (8/200)" in state.reason
    # A High-priority Backlog issue is asked for, beside the bounced addresses' cases.
    [ticket], _ = await store.list_tickets(kind="guard")
    assert (ticket.state, ticket.priority) == ("intent", "high")
    assert (await store.list_tickets(kind="bounce"))[1] == 8
    await c.check_guard(now[0])  # still paused: no second request
    assert (await store.list_tickets(kind="guard"))[1] == 1

    # Survives a restart: a new connection sees the pause.
    again = await reopen(store)
    try:
        assert (await again.sending_state()).paused
    finally:
        await again.close()

    # A resume starts the window afresh: the same bounces do not pause again.
    now[0] += timedelta(minutes=1)
    await store.set_sending(paused=False, reason=None, actor="admin", now=now[0])
    await c.check_guard(now[0] + timedelta(seconds=1))
    assert not (await store.sending_state()).paused
    assert metric(registry, "jpixd_bounce_rate") == 0.0
    assert (await store.delivery_counts())[DeliveryState.SENT] == 200


async def test_admin_suppressions_and_bounces(queue: Queue, registry: CollectorRegistry,
                                              tmp_path: Path) -> None:
    import aiohttp

    from tests.conftest import make_config, running_daemon

    cfg = make_config(tmp_path)
    own = await Store.open(cfg.database_path)  # the database the daemon will use
    try:
        await own.migrate(NOW)
        await queue.publish(bounce(["held@isp.example.jp"], feedback="adm-1"))
        await drain(consumer(queue, own, registry), queue)
    finally:
        await own.close()
    async with running_daemon(cfg, registry=CollectorRegistry()) as d, \
            aiohttp.ClientSession(headers=d.headers) as http:
        base = d.base_url + "/admin/v1"
        async with http.get(base + "/suppressions") as r:
            [item] = (await r.json())["items"]
            assert item["email"] == "held@isp.example.jp"
        async with http.get(base + "/bounces", params={"type": "Bounce"}) as r:
            [event] = (await r.json())["items"]
            assert event["recipient"] == "held@isp.example.jp" and event["counted_in_rate"]
        async with http.delete(base + "/suppressions/held%40isp.example.jp") as r:
            assert r.status == 200 and (await r.json())["lifted"] is True
        async with http.delete(base + "/suppressions/held%40isp.example.jp") as r:
            assert r.status == 404
        async with http.delete(base + "/suppressions/not-an-address") as r:
            assert r.status == 400
        async with http.get(base + "/suppressions") as r:
            assert (await r.json())["total"] == 0


async def test_poison_messages_are_quarantined_and_deleted_never_fatal(
        queue: Queue, store: Store, registry: CollectorRegistry) -> None:
    """Security probe H4: each of these killed the daemon on every restart."""
    for stamp in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+09:00"):
        await queue.publish(bounce(["a@isp.example.jp"], timestamp=stamp,
                                   feedback=f"fb-{stamp[:4]}"))
    await queue.send_raw('{"Type": "Notification", "x": ' + "1" * 5000 + "}")
    await queue.publish(bounce(["victim@x.jp\r\nBcc: evil@x.jp"], feedback="fb-crlf"))
    await queue.publish(bounce(["@@@"], feedback="fb-at"))
    await queue.publish(bounce(["ok@isp.example.jp"], feedback="fb-ok",
                               sub="ThisIsNoSubtype" + "x" * 50))
    await drain(consumer(queue, store, registry), queue)
    assert len(await store.quarantined("sqs")) == 5
    assert metric(registry, "jpixd_sqs_messages_total", result="quarantined") == 5
    # The good message beside them is processed; its odd subtype makes no new series.
    assert [s["email"] for s in (await store.list_suppressions())[0]] == ["ok@isp.example.jp"]
    assert metric(registry, "jpixd_mail_events_total", type="Bounce", subtype="other") == 1
    assert await queue.depth() == 0


@dataclass
class Partition:
    """SQS behind a network partition: while `cut`, connections are accepted and never
    answered; then calls pass to moto."""

    target: str
    cut: bool = True
    session: aiohttp.ClientSession | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.cut:
            await self.release.wait()  # no answer (released when the test ends)
        assert self.session is not None
        return await forward(self.session, self.target, request, body)


async def test_a_partition_to_sqs_is_degraded_not_wedged(queue: Queue, store: Store,
                                                         registry: CollectorRegistry,
                                                         moto_url: str) -> None:
    """Issue 13: botocore's 60 s timeouts outlasted the loop's staleness, so a partition
    to AWS became a watchdog restart loop. A receive now gives up within its read
    timeout; the loop says it is degraded, backs off inside its staleness, recovers."""
    p = Partition(moto_url)
    async with proxying(p) as url:
        kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": url,
                              "config": client_config(read_timeout=2, attempts=1)}
        async with get_session().create_client("sqs", **kw) as sqs:
            metrics = Metrics(registry)
            c = BounceConsumer(sqs, BouncesConfig(queue_url=queue.url,
                                                  wait_time=timedelta(seconds=1)),
                               store, metrics, lambda: NOW, SendingSwitch(store, metrics),
                               file_cases=True)
            await asyncio.wait_for(c.run_once(), timeout=10)  # returns, does not raise
            assert c.degraded and c.failures == 1
            assert c.next_delay() <= c.stale_after / 2
            p.cut = False
            await queue.publish(bounce(["back@isp.example.jp"], feedback="fb-back"))
            await asyncio.wait_for(drain(c, queue), timeout=30)
            assert c.degraded is None and c.failures == 0
        p.release.set()


async def test_gauges_are_right_after_a_restart_without_any_sqs_message(
        store: Store) -> None:
    """Issue 13: suppressed_addresses and the rates were set only after a non-empty SQS
    batch: 0 after a restart, and never decaying."""
    await sent_to(store, NOW, *(f"u{i}@isp.example.jp" for i in range(4)))
    await record_bounce(store, "u0@isp.example.jp", NOW)
    registry = CollectorRegistry()  # a fresh process: nothing set yet
    metrics = Metrics(registry)
    await HousekeepingLoop(store, metrics, lambda: NOW, SendingSwitch(store, metrics),
                           bounces=BouncesConfig(), retention=RetentionConfig()).run_once()
    assert metric(registry, "jpixd_suppressed_addresses") == 1
    assert metric(registry, "jpixd_bounce_rate") == 0.25


async def test_one_message_that_cannot_be_recorded_is_rolled_back_alone(
        store: Store) -> None:
    """A receive's messages share one transaction, a savepoint each: the one whose
    recording raises leaves nothing behind, the others are committed."""
    from jpixd.bounces.parse import parse
    from jpixd.bounces.rules import decide
    from jpixd.config import BouncesConfig
    from tests.sesnotes import bounce, sns

    cfg = BouncesConfig()
    batches = [parse(sns(bounce([e], feedback=f"fb-{e}"), message_id=f"sns-{e}"))[0]
               for e in ("ok1@isp.example.jp", "bad@isp.example.jp", "ok2@isp.example.jp")]

    def deciding(event: Any, soft: int, own: bool) -> Any:
        if event.recipient == "bad@isp.example.jp":
            raise RuntimeError("a rule our code got wrong")
        return decide(event, soft, cfg, self_service=own)

    results = await store.record_event_batches(batches, NOW, decide=deciding,
                                               soft_window=cfg.soft_bounce_window)
    assert isinstance(results[1], RuntimeError)
    assert all(isinstance(r, list) and r[0].new for r in (results[0], results[2]))
    events, total = await store.list_events()
    assert total == 2 and {e["recipient"] for e in events} == {"ok1@isp.example.jp",
                                                                "ok2@isp.example.jp"}
    assert not await store.is_suppressed("bad@isp.example.jp")
    assert await store.is_suppressed("ok2@isp.example.jp")
