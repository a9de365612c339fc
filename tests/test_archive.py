"""The event archive (issue 15): one record per change, in commit order, to files or to
Firehose (moto, with an S3 bucket behind it); an outage of Firehose or a kill -9 loses
nothing and sends nothing twice; sending never waits for it."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp import web
from prometheus_client import CollectorRegistry

from jpixd.config import load_mapping
from jpixd.model import DeliveryState, Subscriber
from tests.awsproxy import forward, proxying
from tests.conftest import DaemonProcess, base_mapping, running_daemon, toml_dumps
from tests.sesnotes import record_bounce
from tests.webharness import write_feed

AWS = {"region_name": "ap-northeast-1"}


def source(tmp_path: Path) -> list[dict[str, Any]]:
    return [{"name": "local", "kind": "json", "carrier": "east",
             "url": (tmp_path / "feed.json").as_uri(), "interval": "1h",
             "send_on_first_poll": True}]


async def settle(rt: Any) -> None:
    """Sender rounds until nothing is due, then archive rounds until nothing is queued."""
    for _ in range(50):
        counts = await rt.store.delivery_counts()
        if counts[DeliveryState.PENDING] == counts[DeliveryState.SENDING] == 0:
            break
        rt.wake("sender")
        await asyncio.wait_for(rt.loops["sender"].next_round(), 10)
    for _ in range(100):
        if (await rt.store.archive_pending())[0] == 0:
            return
        rt.wake("archive")
        await asyncio.wait_for(rt.loops["archive"].next_round(), 10)
    raise AssertionError("the archive did not drain")


async def poll(rt: Any) -> None:
    feeds = rt.loops["feeds"]
    await feeds.poll(feeds.sources["local"])


async def test_every_change_is_one_line_in_commit_order(tmp_path: Path) -> None:
    write_feed(tmp_path, [])  # the notice comes once the subscriber is there
    archive = tmp_path / "archive"
    cfg = load_mapping(base_mapping(tmp_path, sources=source(tmp_path), archive={
        "kind": "file", "dir": str(archive)}), base_dir=tmp_path, env={})
    async with running_daemon(cfg, registry=CollectorRegistry()) as d:
        rt = d.daemon.runtime
        assert rt is not None
        sub = await rt.store.create_subscriber(Subscriber(email="a@isp.example.jp"),
                                               rt.clock())
        write_feed(tmp_path, [{"id": "F1", "kind": "failure", "title": "東京都の一部で故障",
                               "prefectures": ["13"]}])
        await poll(rt)
        await settle(rt)
        await rt.store.set_sending(paused=True, reason="test", actor="admin", now=rt.clock())
        await record_bounce(rt.store, "a@isp.example.jp", rt.clock())
        await settle(rt)
        text = "".join(p.read_text() for p in sorted(archive.glob("archive-*.jsonl")))
        records = [json.loads(line) for line in text.splitlines()]
        seqs = [r["seq"] for r in records]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        [created] = [r for r in records if r["type"] == "deliveries_created"]
        assert created["count"] == 1 and created["state"] == "pending"
        [[delivery_id, _sub, email, purpose, _slot, _due]] = created["deliveries"]
        assert (email, purpose) == ("a@isp.example.jp", "notice")
        life = [r["state"] for r in records if r["type"] == "delivery"]
        assert life == ["sending", "sent"]
        assert all(r["id"] == delivery_id for r in records if r["type"] == "delivery")
        kinds = [r["type"] for r in records]
        assert kinds.index("sending") < kinds.index("mail_event") < kinds.index("suppression")
        [pause] = [r for r in records if r["type"] == "sending"]
        assert pause["state"]["paused"] is True and pause["state"]["actor"] == "admin"
        assert sub.id is not None
        assert rt.metrics.registry.get_sample_value("jpixd_archive_pending") == 0


@dataclass
class FlakyFirehose:
    """Passes Firehose calls to moto, except: `down` whole-call failures (503), then one
    call that stores only every other record and reports the rest as refused."""

    target: str
    down: int = 0
    partial: bool = False
    calls: int = 0
    session: aiohttp.ClientSession | None = None
    refused: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        assert self.session is not None
        if "PutRecordBatch" not in request.headers.get("X-Amz-Target", ""):
            return await forward(self.session, self.target, request, body)
        self.calls += 1
        if self.down > 0:
            self.down -= 1
            return web.json_response({"__type": "ServiceUnavailableException",
                                      "message": "slow down"}, status=503)
        if not self.partial:
            return await forward(self.session, self.target, request, body)
        self.partial = False
        doc = json.loads(body)
        kept = doc["Records"][::2]
        self.refused += [json.loads(base64.b64decode(r["Data"]))["seq"]
                         for r in doc["Records"][1::2]]
        up = await self.session.post(self.target + "/", data=json.dumps(
            {**doc, "Records": kept}), headers={k: v for k, v in request.headers.items()
                                                if k.lower() not in ("host", "content-length")})
        answers = iter(json.loads(await up.read())["RequestResponses"])
        merged = [next(answers) if i % 2 == 0 else {
            "ErrorCode": "ServiceUnavailableException", "ErrorMessage": "throttled"}
            for i in range(len(doc["Records"]))]
        return web.json_response({"FailedPutCount": len(doc["Records"]) // 2,
                                  "Encrypted": False, "RequestResponses": merged},
                                 content_type="application/x-amz-json-1.1")


@pytest.fixture
async def firehose(moto_url: str) -> AsyncIterator[tuple[FlakyFirehose, str, Any, str]]:
    kw = {**AWS, "endpoint_url": moto_url}
    bucket, stream = f"arch-{uuid.uuid4().hex[:8]}", f"jpixd-{uuid.uuid4().hex[:8]}"
    async with get_session().create_client("s3", **kw) as s3, \
            get_session().create_client("firehose", **kw) as fh:
        await s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={
            "LocationConstraint": "ap-northeast-1"})
        await fh.create_delivery_stream(
            DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}"})
        proxy = FlakyFirehose(moto_url)
        async with proxying(proxy) as url:
            yield proxy, url, s3, f"{bucket}|{stream}"


async def landed(s3: Any, bucket: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    listing = await s3.list_objects_v2(Bucket=bucket)
    for obj in sorted(listing.get("Contents", []), key=lambda o: o["Key"]):
        data = await (await s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
        out += [json.loads(line) for line in data.decode().splitlines()]
    return out


async def test_a_firehose_outage_loses_nothing_and_does_not_hold_mail(
        tmp_path: Path, firehose: tuple[FlakyFirehose, str, Any, str]) -> None:
    proxy, url, s3, names = firehose
    bucket, stream = names.split("|")
    proxy.down, proxy.partial = 3, True
    write_feed(tmp_path, [])
    cfg = load_mapping(base_mapping(tmp_path, sources=source(tmp_path), archive={
        "kind": "firehose", "stream": stream, "region": "ap-northeast-1",
        "endpoint_url": url, "interval": "1s"}), base_dir=tmp_path, env={})
    async with running_daemon(cfg, registry=CollectorRegistry()) as d:
        rt = d.daemon.runtime
        assert rt is not None
        for i in range(3):
            await rt.store.create_subscriber(Subscriber(email=f"s{i}@isp.example.jp"),
                                             rt.clock())
        write_feed(tmp_path, [{"id": f"F{i}", "kind": "failure", "title": f"故障 {i}",
                               "prefectures": ["13"]} for i in range(5)])
        await poll(rt)
        # Mail goes out while Firehose refuses everything.
        for _ in range(30):
            if (await rt.store.delivery_counts())[DeliveryState.SENT] == 15:
                break
            rt.wake("sender")
            await asyncio.wait_for(rt.loops["sender"].next_round(), 10)
        assert (await rt.store.delivery_counts())[DeliveryState.SENT] == 15
        # …and none of that waited for the archive, which still holds every record.
        assert (await rt.store.archive_pending())[0] >= 15 * 2
        await settle(rt)  # Firehose back: the backlog drains
        assert proxy.refused  # the partial answer happened and its refusals were resent
        records = await landed(s3, bucket)
        seqs = sorted(r["seq"] for r in records)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # each once, none missing
        assert sum(r["count"] for r in records if r["type"] == "deliveries_created") == 15
        assert len([r for r in records if r["type"] == "delivery"]) == 15 * 2
        assert (rt.metrics.registry.get_sample_value(
            "jpixd_archive_records_total", {"result": "failed"}) or 0) > 0
        assert (rt.metrics.registry.get_sample_value(
            "jpixd_archive_records_total", {"result": "retried"}) or 0) == len(proxy.refused)


async def test_kill_9_before_the_put_loses_nothing(
        tmp_path: Path, firehose: tuple[FlakyFirehose, str, Any, str],
        daemon_process: Callable[..., DaemonProcess]) -> None:
    proxy, url, s3, names = firehose
    bucket, stream = names.split("|")
    proxy.down = 10**6  # Firehose unreachable: everything stays in the outbox
    write_feed(tmp_path, [{"id": "F1", "kind": "failure", "title": "故障",
                           "prefectures": ["13"]}])
    subs = tmp_path / "subs.csv"
    subs.write_text("email\na@isp.example.jp\nb@isp.example.jp\n", encoding="utf-8")
    cfg = base_mapping(tmp_path, sources=source(tmp_path), sample_subscribers=str(subs),
                       archive={"kind": "firehose", "stream": stream,
                                "region": "ap-northeast-1", "endpoint_url": url,
                                "interval": "1s"})
    path = tmp_path / "jpixd.toml"
    path.write_text(toml_dumps(cfg), encoding="utf-8")
    first = daemon_process(["run", "--config", str(path)])
    await asyncio.to_thread(first.wait_until, lambda events: sum(
        e.get("event") == "mail sent" for e in events) == 2, 30)
    await asyncio.to_thread(first.wait_for_event, "archive sink unavailable; records kept")
    first.kill()  # SIGKILL: the records are committed, none was put
    assert await landed(s3, bucket) == []
    proxy.down = 0
    second = daemon_process(["run", "--config", str(path)])
    await asyncio.to_thread(second.wait_for_event, "jpixd ready")
    await asyncio.to_thread(second.wait_until, lambda events: any(
        e.get("event") == "archive records sent" and e.get("pending") == 0
        for e in events), 30)
    records = await landed(s3, bucket)
    deliveries = [r for r in records if r["type"] == "delivery"]
    assert sorted((r["email"], r["state"]) for r in deliveries) == sorted(
        (e, s) for e in ("a@isp.example.jp", "b@isp.example.jp") for s in ("sending", "sent"))
    [created] = [r for r in records if r["type"] == "deliveries_created"]
    assert sorted(d[2] for d in created["deliveries"]) == ["a@isp.example.jp",
                                                           "b@isp.example.jp"]
    seqs = [r["seq"] for r in records]
    assert len(seqs) == len(set(seqs))


async def test_a_large_fan_out_is_archived_in_chunks(store: Any, now: Any) -> None:
    from dataclasses import replace
    from zoneinfo import ZoneInfo

    from jpixd.fanout import Policy, planner
    from jpixd.model import Change, Notice, NoticeKind, NoticeStatus
    from jpixd.subscribers import FIELDS

    await store.set_archiving(True)
    long = "x" * 60  # long local parts: the chunk must still fit Firehose's record limit
    subs = [(Subscriber(email=f"{long}{i}@{'d' * 60}.isp.example.jp"), frozenset(FIELDS))
            for i in range(12001)]
    await store.import_subscribers(subs, now)
    notice = Notice(source="east", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                    status=NoticeStatus.OCCURRED, title="故障", prefectures=("13",))
    result = await store.record_revision(
        notice, revision="r1", change=Change.NEW, now=now,
        planner=planner(notice, Change.NEW, now, Policy(tz=ZoneInfo("Asia/Tokyo"))))
    assert result.deliveries == 12001
    batch = await store.archive_batch(500, 64 * 1024 * 1024)
    created = [json.loads(line) for _, line in batch
               if '"deliveries_created"' in line]
    assert [c["count"] for c in created] == [2000] * 6 + [1]
    ids = [d[0] for c in created for d in c["deliveries"]]
    assert ids == sorted(ids) and len(set(ids)) == 12001
    assert all(len(line.encode()) < 1000 * 1024 for _, line in batch)  # Firehose's limit
    await store.archive_done([seq for seq, _ in batch])
    # The 第2報: its 12,001 new deliveries supersede the first's, archived as one record
    # of their ids (not 12,001 of one row each).
    updated = replace(notice, title="故障（第2報）")
    await store.record_revision(
        updated, revision="r2", change=Change.UPDATE, now=now,
        planner=planner(updated, Change.UPDATE, now, Policy(tz=ZoneInfo("Asia/Tokyo"))))
    records = [json.loads(line) for _, line in await store.archive_batch(500, 64 << 20)]
    assert [r["type"] for r in records].count("delivery") == 0
    [superseded] = [r for r in records if r["type"] == "deliveries_superseded"]
    assert superseded["count"] == 12001 and sorted(superseded["ids"]) == sorted(ids)


async def test_the_file_sink_rotates_and_keeps_what_it_is_told(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from jpixd.archive import FileSink

    now = [datetime(2026, 11, 29, 12, 0, tzinfo=UTC)]
    sink = FileSink(tmp_path / "a", max_bytes=100, keep=3, clock=lambda: now[0])
    line = '{"seq":1,"type":"x","pad":"' + "p" * 18 + '"}\n'  # 47 bytes: two to a part
    for _ in range(4):  # 200 bytes this hour: parts of at most 100
        assert await sink.put([line]) == [True]
    now[0] = now[0].replace(hour=13)
    assert await sink.put([line]) == [True]
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    # Hour 12 made two parts (000, 001), hour 13 one; three kept.
    assert files == ["archive-20261129T12-000.jsonl", "archive-20261129T12-001.jsonl",
                     "archive-20261129T13-000.jsonl"]
    assert all(p.stat().st_size <= 100 for p in (tmp_path / "a").iterdir())
    now[0] = now[0].replace(hour=14)
    await sink.put([line])
    assert "archive-20261129T12-000.jsonl" not in {p.name for p in (tmp_path / "a").iterdir()}


async def test_a_marker_of_our_own_is_one_record_alike_on_both_databases(
        store: Any, now: Any) -> None:
    """A cut-over's marker (`jpixd shadow cutover`) goes the same way as every record, and
    reads the same from either database."""
    from jpixd.store.base import to_db

    await store.set_archiving(True)
    await store.archive_marker("cutover", now)
    [(seq, line)] = await store.archive_batch(10, 1 << 20)
    assert json.loads(line) == {"seq": seq, "type": "cutover", "at": to_db(now)}


async def test_self_service_mail_is_archived_as_a_delivery_on_both_databases(
        store: Any, now: Any) -> None:
    """A confirmation is a row of the one outbox (issue 24): archived when asked for and at
    each change of state, as a `delivery` of its purpose, on either database."""
    from datetime import timedelta

    from jpixd.selfmail import Limits

    await store.set_archiving(True)
    mid, _ = await store.queue_self_mail("confirm", 7, "new@isp.example.jp", now,
                                         Limits(3, 100, 10), now)
    [claimed] = await store.claim_self_mails(now, 5, claimer="h",
                                             lease_until=now + timedelta(minutes=1))
    await store.mark_sent(claimed.id, now, transport="ses", message_id="<m>",
                          ses_message_id="ses-1")
    records = [json.loads(line) for _, line in await store.archive_batch(10, 1 << 20)]
    assert [(r["type"], r["id"], r["purpose"], r["state"]) for r in records] == [
        ("delivery", mid, "confirm", "pending"), ("delivery", mid, "confirm", "sending"),
        ("delivery", mid, "confirm", "sent")]
    assert records[-1]["ses_message_id"] == "ses-1" and records[0]["notice_id"] is None
