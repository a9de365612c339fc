"""Admin API: sources with their state, poll now, notices with filters and history."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from tests.conftest import make_config, on_backend, running_daemon


def write_feed(path: Path, notices: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"notices": notices}, ensure_ascii=False), encoding="utf-8")


FAILURE = {"id": "F1", "kind": "failure", "status": "occurred", "title": "東京都の一部で故障",
           "starts_at": "2026-11-28T09:10:00+09:00", "prefectures": ["東京都"], "report_number": 1}
WORKS = {"id": "C1", "kind": "construction", "title": "大阪府の一部で工事",
         "starts_at": "2026-12-03T00:00:00+09:00", "ends_at": "2026-12-03T06:00:00+09:00",
         "prefectures": ["27"]}


async def test_poll_now_and_notice_history(tmp_path: Path, backend_url: str | None) -> None:
    feed = tmp_path / "feed.json"
    write_feed(feed, [FAILURE, WORKS])
    redesigned = Path(__file__).parent / "corpus" / "east-redesigned.html"
    cfg = make_config(tmp_path, sources=[{
        "name": "local", "kind": "json", "carrier": "east", "url": feed.as_uri(),
        "interval": "1h", "send_on_first_poll": True}, {
        "name": "east", "kind": "ntt-east", "carrier": "east", "url": redesigned.as_uri(),
        "interval": "1h"}], **on_backend(backend_url))
    async with running_daemon(cfg, registry=CollectorRegistry()) as d, \
            aiohttp.ClientSession(headers=d.headers) as http:
        base = d.base_url + "/admin/v1"
        assert d.daemon.runtime is not None
        # The loop polls at start; wait for that round so that "poll now" is ours alone.
        await asyncio.wait_for(d.daemon.runtime.loops["feeds"].first_round.wait(), 10)
        async with http.post(base + "/sources/local/poll") as r:
            report = await r.json()
            assert r.status == 200 and report["result"] == "not_modified"
        write_feed(feed, [{**FAILURE, "report_number": 2, "body": "原因を調査中です。"}, WORKS])
        async with http.post(base + "/sources/local/poll") as r:
            report = await r.json()
            assert report["result"] == "ok" and report["counts"] == {"unchanged": 1, "update": 1}
            [change] = report["changes"]
            assert change["external_id"] == "F1" and change["change"] == "update"
        async with http.get(base + "/notices", params={"kind": "failure"}) as r:
            page = await r.json()
            assert page["total"] == 1
            notice = page["items"][0]
            assert notice["report_number"] == 2 and notice["prefectures"] == ["13"]
            assert notice["starts_at"] == "2026-11-28T09:10:00+09:00"
        async with http.get(f"{base}/notices/{notice['id']}") as r:
            detail = await r.json()
            assert [x["change"] for x in detail["revisions"]] == ["new", "update"]
            assert detail["revisions"][0]["content"]["report_number"] == 1
        async with http.get(base + "/notices", params={"prefecture": "大阪府"}) as r:
            assert [n["external_id"] for n in (await r.json())["items"]] == ["C1"]
        async with http.get(base + "/notices",
                            params={"since": "2099-01-01T00:00:00+09:00"}) as r:
            assert (await r.json())["total"] == 0
        async with http.get(base + "/sources") as r:
            src, east = (await r.json())["items"]
            assert src["name"] == "local" and src["baseline_done"] is True
            assert src["last_success_at"] and src["consecutive_failures"] == 0
            assert src["last_result"] == "ok" and src["last_error"] is None
            # A page in a layout jpixd cannot read: said so, within one poll.
            assert east["last_result"] == "layout_changed" and "layout" in east["last_error"]
            assert east["layout_warning"] and east["last_success_at"] is None
        async with http.get(d.base_url + "/readyz") as r:
            assert r.status == 200  # a redesigned page is news for operators, not unready
        for bad, field in (({"since": "yesterday"}, "since"), ({"kind": "outage"}, "kind"),
                           ({"since": "2026-01-01T00:00:00"}, "since"),
                           ({"prefecture": "Atlantis"}, "prefecture")):
            async with http.get(base + "/notices", params=bad) as r:
                assert r.status == 400 and field in (await r.json())["error"]["fields"]
        async with http.post(base + "/sources/nope/poll") as r:
            assert r.status == 404
        async with http.get(base + "/notices/999") as r:
            assert r.status == 404
        async with http.get(d.base_url + "/metrics") as r:
            text = await r.text()
            assert 'jpixd_feed_polls_total{result="ok",source="local"}' in text
            assert 'jpixd_feed_polls_total{result="layout_changed",source="east"} 1.0' in text
            assert 'jpixd_feed_polls_total{result="layout_changed",source="local"} 0.0' in text
            assert 'jpixd_notices_total{change="update",kind="failure",source="local"} 1.0' in text
