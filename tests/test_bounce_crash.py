"""kill -9 of a real `jpixd run` after it committed an SQS message's events and before it
deleted the message: on restart the redelivered message is recognised as a duplicate."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp import web

from tests.awsproxy import forward, proxying
from tests.conftest import DaemonProcess, base_mapping, toml_dumps
from tests.sesnotes import bounce, sns


@dataclass
class HoldingProxy:
    """Passes SQS calls to moto, but holds DeleteMessage(Batch) while `hold` is set."""

    target: str
    hold: bool = True
    delete_seen: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        action = request.headers.get("X-Amz-Target", "") + body[:200].decode(errors="replace")
        if self.hold and "DeleteMessage" in action:
            self.delete_seen.set()  # the events are committed: the delete comes after
            await self.release.wait()
            return web.Response(status=503)
        assert self.session is not None
        return await forward(self.session, self.target, request, body)


@pytest.fixture
async def proxy(moto_url: str) -> AsyncIterator[tuple[HoldingProxy, str]]:
    p = HoldingProxy(moto_url)
    async with proxying(p) as url:
        yield p, url
        p.release.set()  # a held delete must not keep the server from stopping


async def test_kill_9_between_commit_and_delete(
        tmp_path: Path, moto_url: str, proxy: tuple[HoldingProxy, str],
        daemon_process: Callable[..., DaemonProcess]) -> None:
    p, proxy_url = proxy
    kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": moto_url}
    async with get_session().create_client("sqs", **kw) as sqs:
        url = (await sqs.create_queue(QueueName=f"crash-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        await sqs.send_message(QueueUrl=url, MessageBody=sns(bounce(
            ["crash@isp.example.jp"], feedback="fb-crash")))
        cfg = base_mapping(tmp_path, bounces={
            "queue_url": url, "region": "ap-northeast-1", "endpoint_url": proxy_url,
            "wait_time": "1s", "visibility_timeout": "2s"})
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(cfg), encoding="utf-8")

        first = daemon_process(["run", "--config", str(path)])
        await asyncio.wait_for(p.delete_seen.wait(), 30)
        first.proc.kill()
        assert await asyncio.to_thread(first.finish, 30) == -9
        db = sqlite3.connect(tmp_path / "state" / "jpixd.sqlite3")
        assert db.execute("SELECT COUNT(*) FROM mail_events").fetchone()[0] == 1  # committed
        db.close()

        p.hold = False
        p.release.set()
        second = daemon_process(["run", "--config", str(path)])
        line = await asyncio.to_thread(second.wait_for_event,
                                       "SQS message already recorded (a redelivery)", 30)
        assert line["events"] == 1
        second.proc.terminate()
        assert await asyncio.to_thread(second.finish, 30) == 0
        attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        a = attrs["Attributes"]
        assert a["ApproximateNumberOfMessages"] == "0"
        assert a["ApproximateNumberOfMessagesNotVisible"] == "0"

    db = sqlite3.connect(tmp_path / "state" / "jpixd.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM mail_events").fetchone()[0] == 1
    assert db.execute("SELECT reason FROM suppressions").fetchall() == [
        ("permanent bounce (Permanent/General)",)]
    assert json.loads(db.execute("SELECT raw FROM mail_events").fetchone()[0])[
        "notificationType"] == "Bounce"
