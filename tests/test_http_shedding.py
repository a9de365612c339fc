"""The HTTP listener sheds load (security probe M6): a connection that never finishes its
request head is closed after header_timeout, connections over max_connections are closed
at once, a dripped body gets 408, malformed requests get 4xx — and /healthz answers
throughout for those that behave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from tests.conftest import ADMIN_TOKEN, RunningDaemon, make_config, running_daemon


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, **http: object) -> AsyncIterator[RunningDaemon]:
    cfg = make_config(tmp_path, http={"listen": "127.0.0.1:0",
                                      "admin_token_file": str(tmp_path / "admin-token"),
                                      **http})
    async with running_daemon(cfg, registry=CollectorRegistry()) as d:
        yield d


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection (EOF) within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            return await reader.read(65536) == b"" or await reader.read() == b""
    except TimeoutError:
        return False


async def test_a_head_that_never_ends_is_closed(tmp_path: Path) -> None:
    async with daemon(tmp_path, header_timeout="1s") as d:
        host, port = d.base_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing
        await writer.drain()
        assert await closed_by_server(reader, within=10)
        writer.close()
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/metrics") as r:
            text = await r.text()
        assert 'jpixd_http_shed_total{listener="admin",reason="header_timeout"} 1.0' in text


async def test_when_full_the_longest_idle_connection_makes_room(tmp_path: Path) -> None:
    """Issue 21 (N6): a full listener used to turn every newcomer away while idle
    connections held its slots; now the one that has waited longest for a request head
    is closed and the newcomer served."""
    async with daemon(tmp_path, max_connections=4, header_timeout="30s") as d:
        host, port = d.base_url.removeprefix("http://").rsplit(":", 1)
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(4)]
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/healthz") as r:
            assert r.status == 200  # the fifth connection is served…
        assert await closed_by_server(idle[0][0], within=5)  # …in the oldest one's place
        for _, idle_writer in idle:
            idle_writer.close()
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/metrics") as r:
            text = await r.text()
        assert 'jpixd_http_shed_total{listener="admin",reason="idle_evicted"} 1.0' in text


async def test_a_dripped_body_gets_408_in_the_api_shape(tmp_path: Path) -> None:
    async with daemon(tmp_path, body_timeout="1s") as d:
        host, port = d.base_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /admin/v1/sending/pause HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"re")
        await writer.drain()
        async with asyncio.timeout(10):
            status = await reader.readline()
            rest = await reader.read(4096)
        assert status.startswith(b"HTTP/1.1 408") and b'"code": "request_timeout"' in rest
        writer.close()
        async with aiohttp.ClientSession() as http, http.get(
                d.base_url + "/admin/v1/status",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert (await r.json())["sending"]["paused"] is False  # nothing half-done


async def test_malformed_requests_get_4xx(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        host, port = d.base_url.removeprefix("http://").rsplit(":", 1)
        for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(raw)
            await writer.drain()
            async with asyncio.timeout(10):
                status = await reader.readline()
            assert status[9:10] == b"4", (raw, status)
            writer.close()
