"""The database goes away under a running daemon and comes back (an RDS failover, as
near as one machine gets: the server restarted, every session ended): the daemon loses
its leadership, takes it again, and the next notice is mailed. Nothing was lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from jpixd.model import DeliveryState, Subscriber
from tests.conftest import make_config, running_daemon
from tests.pgserver import (
    create_database,
    needs_postgres,
    restart_postgres,
    running_postgres,
)

pytestmark = needs_postgres


def _feed(path: Path, ids: list[str]) -> None:
    path.write_text(json.dumps({"notices": [
        {"id": i, "kind": "failure", "title": f"東京都の一部で故障 {i}", "prefectures": ["13"]}
        for i in ids]}, ensure_ascii=False), encoding="utf-8")


async def test_a_restarted_database_is_reconnected_and_mail_flows_again(
        tmp_path: Path) -> None:
    with running_postgres() as server:
        url = await create_database(server)
        feed = tmp_path / "feed.json"
        _feed(feed, ["F1"])
        cfg = make_config(tmp_path, database_url=url,
                          cluster={"leader_timeout": "3s"},
                          sources=[{"name": "local", "kind": "json", "carrier": "east",
                                    "url": feed.as_uri(), "interval": "1h",
                                    "send_on_first_poll": True}])
        async with running_daemon(cfg, registry=CollectorRegistry()) as d, \
                aiohttp.ClientSession(headers=d.headers) as http:
            rt, cluster = d.daemon.runtime, d.daemon.cluster
            assert rt is not None and cluster is not None
            await rt.store.create_subscriber(Subscriber(email="a@isp.example.jp"), rt.clock())

            async def led() -> None:
                while not cluster.leads("feeds"):
                    cluster.beaten.clear()
                    await cluster.beaten.wait()

            async def sent(n: int) -> None:
                sender = rt.loops["sender"]
                while (await rt.store.delivery_counts())[DeliveryState.SENT] < n:
                    rt.wake("sender")
                    await sender.next_round()

            await asyncio.wait_for(led(), 10)
            async with http.post(d.base_url + "/admin/v1/sources/local/poll") as r:
                assert r.status == 200
            await asyncio.wait_for(sent(1), 20)

            cluster.changed.clear()  # set when the roles were taken at start
            await asyncio.to_thread(restart_postgres, server)
            _feed(feed, ["F1", "F2"])
            # Leadership is lost with the session, then taken again on a new one.
            await asyncio.wait_for(cluster.changed.wait(), 10)
            assert not cluster.leads("feeds")
            await asyncio.wait_for(led(), 20)
            async with http.post(d.base_url + "/admin/v1/sources/local/poll") as r:
                assert r.status == 200, await r.text()
                report = await r.json()
            assert report["counts"] == {"unchanged": 1, "new": 1}
            await asyncio.wait_for(sent(2), 20)
            # The first notice's mail was not sent again.
            assert (await rt.store.delivery_counts())[DeliveryState.SENT] == 2
