"""Odd and hostile requests (security probe L1, L2): every one is a clean 4xx, nothing is
changed, and nothing is taken for what it is not (「١」 is not delivery 1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from jpixd.model import Subscriber, utcnow
from tests.conftest import ADMIN_TOKEN, RunningDaemon, make_config, running_daemon

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(make_config(tmp_path), registry=CollectorRegistry()) as d:
        yield d


@pytest.mark.parametrize("token", ["%C2%B2.abc", "%D9%A1%D9%A2.abc", "%EF%BC%91.abc",
                                   "1.%C3%A9", "1" * 5000 + ".abc"])
async def test_odd_unsubscribe_tokens_are_400(daemon: RunningDaemon, token: str) -> None:
    async with aiohttp.ClientSession() as http, \
            http.post(f"{daemon.base_url}/unsubscribe?token={token}") as r:
        assert r.status == 400


async def test_raw_bytes_in_authorization_are_401(daemon: RunningDaemon) -> None:
    host, port = daemon.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /admin/v1/status HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer \xff\xfe\xfd\r\nConnection: close\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(10):
        assert (await reader.readline()).startswith(b"HTTP/1.1 401")
    writer.close()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/admin/v1/notices?offset=9223372036854775808", 400),
    ("GET", "/admin/v1/notices?limit=%EF%BC%91", 400),
    ("GET", "/admin/v1/notices/99999999999999999999", 404),
    ("GET", "/admin/v1/notices/%C2%B2", 404),
    ("POST", "/admin/v1/deliveries/%D9%A1/retry", 404),
    ("GET", "/admin/v1/preview?notice=99999999999999999999&subscriber=1", 400),
    ("GET", "/admin/v1/notices?since=0001-01-01T00:00:00%2B09:00", 400),
    ("GET", "/admin/v1/notices?since=9999-12-31T23:59:59-23:59", 400),
])
async def test_out_of_range_numbers_and_odd_digits(daemon: RunningDaemon, method: str,
                                                   path: str, status: int) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http, \
            http.request(method, daemon.base_url + path) as r:
        assert r.status == status
        assert "error" in await r.json()


@pytest.mark.parametrize("body", [
    b'{"email": "a@isp.example.jp", "x": ' + b"1" * 5000 + b"}",
    b'{"email": "a@isp.example.jp", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"email": "a@isp.example.jp", "name": "\\ud800"}',
])
async def test_json_bodies_our_parser_cannot_hold_are_400(daemon: RunningDaemon,
                                                          body: bytes) -> None:
    async with aiohttp.ClientSession(headers={**AUTH, "Content-Type": "application/json"}
                                     ) as http:
        async with http.post(daemon.base_url + "/admin/v1/subscribers", data=body) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
        async with http.get(daemon.base_url + "/admin/v1/subscribers") as r:
            assert (await r.json())["total"] == 0


async def test_a_huge_pause_reason_is_refused(daemon: RunningDaemon) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(daemon.base_url + "/admin/v1/sending/pause",
                             json={"reason": "x" * 7_000_000}) as r:
            assert r.status == 400
        async with http.get(daemon.base_url + "/admin/v1/status") as r:
            assert (await r.json())["sending"]["paused"] is False


async def test_search_words_are_words_not_wildcards(daemon: RunningDaemon) -> None:
    assert daemon.daemon.runtime is not None
    store = daemon.daemon.runtime.store
    await store.create_subscriber(Subscriber(email="a@isp.example.jp", name="100%達成"),
                                  utcnow())
    await store.create_subscriber(Subscriber(email="b@isp.example.jp", name="山田"), utcnow())
    async with aiohttp.ClientSession(headers=AUTH) as http:
        for q, want in (("%", 1), ("_", 0), ("山", 1)):
            async with http.get(daemon.base_url + "/admin/v1/subscribers",
                                params={"q": q}) as r:
                assert (await r.json())["total"] == want, q


async def test_the_quarantine_is_listed_and_dropped_by_operators(daemon: RunningDaemon) -> None:
    assert daemon.daemon.runtime is not None
    store = daemon.daemon.runtime.store
    await store.quarantine(origin="sqs", ref="m-1", reason="body is not JSON", payload="{x",
                           now=utcnow())
    await store.quarantine(origin="feed", ref="east:(page)", reason="unexpected X",
                           payload="<html>", now=utcnow(), incident="abc123")
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(daemon.base_url + "/admin/v1/quarantine",
                            params={"origin": "sqs"}) as r:
            page = await r.json()
        assert page["total"] == 1 and page["items"][0]["payload"] == "{x"
        async with http.get(daemon.base_url + "/admin/v1/quarantine") as r:
            [feed, sqs] = (await r.json())["items"]  # newest first
        assert "incident abc123" in feed["reason"]
        async with http.delete(f"{daemon.base_url}/admin/v1/quarantine/{sqs['id']}") as r:
            assert r.status == 200
        async with http.delete(f"{daemon.base_url}/admin/v1/quarantine/{sqs['id']}") as r:
            assert r.status == 404
        async with http.get(daemon.base_url + "/admin/v1/quarantine",
                            params={"origin": "elsewhere"}) as r:
            assert r.status == 400
