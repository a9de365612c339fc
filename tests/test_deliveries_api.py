"""Admin API for deliveries and the preview, and the public one-click unsubscribe, on a
daemon that sends with the file transport."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from jpixd.fanout import Policy, planner
from jpixd.model import (
    JST,
    Change,
    DeliveryState,
    Notice,
    NoticeKind,
    NoticeStatus,
    Subscriber,
)
from jpixd.store import Store
from tests.conftest import make_config, on_backend, running_daemon


async def test_deliveries_retry_preview_and_unsubscribe(tmp_path: Path,
                                                        backend_url: str | None) -> None:
    subs = tmp_path / "subs.csv"
    subs.write_text("email,name,carriers\na@isp.example.jp,阿部,west\nb@isp.example.jp,,west\n",
                    encoding="utf-8")
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"notices": [{"id": "F1", "kind": "failure",
                                             "title": "大阪府の一部で故障",
                                             "prefectures": ["27"]}]}, ensure_ascii=False))
    outbox = tmp_path / "outbox"
    cfg = make_config(tmp_path, sample_subscribers=str(subs), sources=[{
        "name": "local", "kind": "json", "carrier": "west", "url": feed.as_uri(),
        "interval": "1h", "send_on_first_poll": True}],
        mail={"from": "notice@example.jp", "transport": "file", "file": {"dir": str(outbox)},
              "list_unsubscribe": "https://notice.example.jp/unsubscribe"},
        **on_backend(backend_url))
    async with running_daemon(cfg, registry=CollectorRegistry()) as d, \
            aiohttp.ClientSession(headers=d.headers) as http:
        rt = d.daemon.runtime
        assert rt is not None
        await asyncio.wait_for(rt.loops["feeds"].first_round.wait(), 10)
        base = d.base_url + "/admin/v1"
        # Let the sender do rounds until it has taken the two new deliveries.
        for _ in range(20):
            if (await rt.store.delivery_counts())[DeliveryState.SENT] == 2:
                break
            rt.wake("sender")
            await asyncio.wait_for(rt.loops["sender"].next_round(), 10)
        async with http.get(base + "/deliveries", params={"state": "sent"}) as r:
            page = await r.json()
            assert page["total"] == 2
            first = page["items"][0]
            assert first["message_id"].startswith("<jpixd.")
        assert len(list(outbox.glob("*.eml"))) == 2

        async with http.post(f"{base}/deliveries/{first['id']}/retry") as r:
            assert r.status == 409  # a sent mail is not sent again by accident
        async with http.get(base + "/deliveries", params={"state": "lost"}) as r:
            assert r.status == 400
        async with http.post(f"{base}/deliveries/999/retry") as r:
            assert r.status == 404

        async with http.get(base + "/preview", params={
                "notice": str(first["notice_id"]), "subscriber": str(first["subscriber_id"])}) as r:
            assert r.status == 200 and r.content_type == "message/rfc822"
            msg = message_from_bytes(await r.read(), policy=policy.default)
            assert msg["Subject"] == "【故障】大阪府の一部で故障"
            unsubscribe = msg["List-Unsubscribe"].strip("<>")
        async with http.get(base + "/preview", params={"notice": "1", "subscriber": "99"}) as r:
            assert r.status == 404

        # The one-click link (no admin token): GET changes nothing, POST unsubscribes.
        local = d.base_url + "/unsubscribe?" + unsubscribe.split("?", 1)[1]
        async with aiohttp.ClientSession() as anon:
            async with anon.get(local) as r:
                assert r.status == 200
            sub = await rt.store.get_subscriber(first["subscriber_id"])
            assert sub is not None and sub.status == "active"
            async with anon.post(local) as r:
                assert r.status == 200
            async with anon.post(d.base_url + "/unsubscribe?token=1.forged") as r:
                assert r.status == 400
        sub = await rt.store.get_subscriber(first["subscriber_id"])
        assert sub is not None and sub.status == "unsubscribed"
        async with http.get(base + "/status") as r:
            status = await r.json()
            assert status["transport"] == "file" and status["deliveries"]["sent"] == 2


async def test_retry_sends_waiting_mail_now(store: Store) -> None:
    """Issue 13: a retry of mail waiting for its window answered 200 and did nothing."""
    night = datetime(2026, 11, 28, 21, 0, tzinfo=JST)
    sub = await store.create_subscriber(Subscriber(email="day@isp.example.jp",
                                                   windows=("day",)), night)
    works = Notice(source="s", external_id="C1", carrier="east",
                   kind=NoticeKind.CONSTRUCTION, status=NoticeStatus.SCHEDULED,
                   title="工事", starts_at=night + timedelta(days=5))
    await store.record_revision(works, revision="r1", change=Change.NEW, now=night,
                                planner=planner(works, Change.NEW, night, Policy(tz=JST)))
    pending, _ = await store.list_deliveries(state="pending")
    [waiting] = [d for d in pending if d.purpose == "notice"]
    assert waiting.subscriber_id == sub.id and waiting.not_before > night  # 08:00 next day
    retried = await store.retry_delivery(waiting.id, night)
    assert retried is not None and retried.not_before == night
    assert retried.state == DeliveryState.PENDING
