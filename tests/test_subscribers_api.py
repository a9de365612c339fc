"""Admin API for subscribers: validation names the field, 404/409, filters and paging,
and what a change does to mail not yet sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from jpixd.fanout import Policy, planner
from jpixd.model import Change, DeliveryState, Notice, NoticeKind, NoticeStatus
from jpixd.store import AnyStore
from tests.conftest import RunningDaemon, make_config, on_backend, running_daemon


@pytest.fixture
async def api(tmp_path: Path, backend_url: str | None
              ) -> AsyncIterator[tuple[aiohttp.ClientSession, str, AnyStore]]:
    async with running_daemon(make_config(tmp_path, **on_backend(backend_url)),
                              registry=CollectorRegistry()) as d:
        assert d.daemon.runtime is not None
        async with aiohttp.ClientSession(headers=d.headers) as http:
            yield http, d.base_url + "/admin/v1/subscribers", d.daemon.runtime.store


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as r:
        return r.status, await r.json()


async def test_create_get_patch_delete(api: tuple[aiohttp.ClientSession, str, AnyStore]) -> None:
    http, url, _ = api
    status, created = await post(http, url, {
        "email": "Noc@Ｅｘａｍｐｌｅ.JP", "name": "運用担当", "organization": "株式会社例",
        "carriers": ["west"], "prefectures": ["大阪府", "28", "京都"], "kinds": ["failure"],
        "windows": ["day", "night"]})
    assert status == 201, created
    # Lower-cased whole (and the domain NFKC'd by IDNA): see the README's security notes.
    assert created["email"] == "noc@example.jp"
    assert created["prefectures"] == ["26", "27", "28"]
    assert created["status"] == "active" and created["services"] == []
    sid = created["id"]
    async with http.get(f"{url}/{sid}") as r:
        assert r.status == 200 and (await r.json()) == created
    async with http.patch(f"{url}/{sid}", json={"kinds": ["construction", "failure"],
                                                "email": "noc@例え.jp"}) as r:
        body = await r.json()
        assert r.status == 200, body
        assert body["kinds"] == ["construction", "failure"]
        assert body["email"] == "noc@xn--r8jz45g.jp"  # IDNA-encoded domain
    async with http.delete(f"{url}/{sid}") as r:
        assert r.status == 200 and (await r.json()) == {"deleted": True, "id": sid}
    for method in ("GET", "PATCH", "DELETE"):
        async with http.request(method, f"{url}/{sid}", json={}) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
    # The address is free again: a new subscriber, a new id.
    status, again = await post(http, url, {"email": "noc@例え.jp"})
    assert status == 201 and again["id"] != sid


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"email": "is required"}),
    ({"email": "no-at-sign"}, {"email": "'no-at-sign' is not an email address"}),
    ({"email": "a b@example.jp"}, {"email": "'a b@example.jp' has an invalid local part"}),
    ({"email": "x@localhost"}, {"email": "'x@localhost' has an invalid domain"}),
    ({"email": "x@example.jp", "carriers": ["north"]},
     {"carriers": "'north' is not one of east, west"}),
    ({"email": "x@example.jp", "carriers": []},
     {"carriers": "must name at least one of east, west"}),
    ({"email": "x@example.jp", "prefectures": ["東亰都"]},
     {"prefectures": "'東亰都' is not a prefecture (a code 01–47 or a name such as 東京都)"}),
    ({"email": "x@example.jp", "prefectures": "13"}, {"prefectures": "must be a list of strings"}),
    ({"email": "x@example.jp", "windows": ["morning"]},
     {"windows": "'morning' is not one of day, night, late_night"}),
    ({"email": "x@example.jp", "name": "Evil\r\nBcc: all@example.jp"},
     {"name": "must not contain line breaks or control characters"}),
    ({"email": "x@example.jp", "charset": "sjis"},
     {"charset": "'sjis' is not one of iso-2022-jp, utf-8 (or null)"}),
    ({"email": "x@example.jp", "failure_respects_windows": "yes"},
     {"failure_respects_windows": "must be true or false"}),
    ({"email": "x@example.jp", "id": 5, "colour": "blue"},
     {"id": "is read-only", "colour": "unknown field"}),
])
async def test_validation_names_every_bad_field(api: tuple[aiohttp.ClientSession, str, AnyStore],
                                                body: dict[str, Any],
                                                fields: dict[str, str]) -> None:
    http, url, store = api
    status, resp = await post(http, url, body)
    assert status == 400
    assert resp["error"]["code"] == "invalid_subscriber"
    assert resp["error"]["fields"] == fields
    assert (await store.list_subscribers())[1] == 0


async def test_duplicates_are_refused(api: tuple[aiohttp.ClientSession, str, AnyStore]) -> None:
    http, url, _ = api
    assert (await post(http, url, {"email": "dup@example.jp"}))[0] == 201
    status, body = await post(http, url, {"email": "dup@EXAMPLE.jp"})
    assert status == 409 and body["error"]["fields"] == {"email": "already subscribed"}
    _, other = await post(http, url, {"email": "other@example.jp"})
    async with http.patch(f"{url}/{other['id']}", json={"email": "dup@example.jp"}) as r:
        assert r.status == 409


async def test_filters_and_paging(api: tuple[aiohttp.ClientSession, str, AnyStore]) -> None:
    http, url, _ = api
    for i in range(5):
        await post(http, url, {"email": f"e{i}@east.example.jp", "carriers": ["east"],
                               "prefectures": ["13"]})
    await post(http, url, {"email": "w@west.example.jp", "carriers": ["west"],
                           "prefectures": ["27"], "organization": "関西ネット"})
    await post(http, url, {"email": "all@example.jp"})
    async with http.get(url, params={"carrier": "west"}) as r:
        body = await r.json()
        assert [s["email"] for s in body["items"]] == ["w@west.example.jp", "all@example.jp"]
    async with http.get(url, params={"prefecture": "東京都", "limit": "2", "offset": "2"}) as r:
        body = await r.json()
        assert body["total"] == 6 and body["limit"] == 2 and body["offset"] == 2
        assert [s["email"] for s in body["items"]] == ["e2@east.example.jp",
                                                       "e3@east.example.jp"]
    async with http.get(url, params={"q": "関西"}) as r:
        assert [s["email"] for s in (await r.json())["items"]] == ["w@west.example.jp"]
    for params, field in (({"limit": "0"}, "limit"), ({"offset": "-1"}, "offset"),
                          ({"carrier": "north"}, "carrier"), ({"prefecture": "X"}, "prefecture"),
                          ({"limit": "ten"}, "limit")):
        async with http.get(url, params=params) as r:
            assert r.status == 400
            assert list((await r.json())["error"]["fields"]) == [field]


async def test_changes_reach_mail_not_yet_sent_and_the_next_fanout(
        api: tuple[aiohttp.ClientSession, str, AnyStore]) -> None:
    http, url, store = api
    # Mail not yet sent, whatever today's date: sending is paused while the test looks.
    # (It passed only while its fixed date lay in the future: the running sender sent
    # the mail before the change once the date was past.)
    async with http.post(url.replace("/subscribers", "/sending/pause"),
                         json={"reason": "test"}) as r:
        assert r.status == 200
    _, a = await post(http, url, {"email": "a@example.jp", "carriers": ["west"]})
    _, b = await post(http, url, {"email": "b@example.jp", "carriers": ["west"]})
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    notice = Notice(source="w", external_id="1", carrier="west", kind=NoticeKind.FAILURE,
                    status=NoticeStatus.OCCURRED, title="故障", prefectures=("27",))
    policy = Policy(tz=ZoneInfo("Asia/Tokyo"))
    res = await store.record_revision(notice, revision="r1", change=Change.NEW, now=now,
                                      planner=planner(notice, Change.NEW, now, policy))
    assert res.deliveries == 2

    async with http.patch(f"{url}/{a['id']}", json={"email": "a2@example.jp"}) as r:
        assert r.status == 200
    async with http.delete(f"{url}/{b['id']}") as r:
        assert r.status == 200
    items, _ = await store.list_deliveries(notice_id=res.notice_id)
    by_sub = {d.subscriber_id: d for d in items}
    assert by_sub[a["id"]].email == "a2@example.jp"
    assert by_sub[a["id"]].state == DeliveryState.PENDING
    assert by_sub[b["id"]].state == DeliveryState.SKIPPED
    assert by_sub[b["id"]].reason == "subscriber deleted"

    async with http.patch(f"{url}/{a['id']}", json={"carriers": ["east"]}) as r:
        assert r.status == 200
    res2 = await store.record_revision(notice, revision="r2", change=Change.UPDATE, now=now,
                                       planner=planner(notice, Change.UPDATE, now, policy))
    assert res2.deliveries == 0


async def test_subscribers_are_in_the_openapi_document(tmp_path: Path) -> None:
    async with running_daemon(make_config(tmp_path), registry=CollectorRegistry()) as d:
        rd: RunningDaemon = d
        async with aiohttp.ClientSession(headers=rd.headers) as http, http.get(
                rd.base_url + "/admin/v1/openapi.json") as r:
            paths = (await r.json())["paths"]
    assert set(paths["/admin/v1/subscribers"]) == {"get", "post"}
    assert set(paths["/admin/v1/subscribers/{id}"]) == {"get", "patch", "delete"}
