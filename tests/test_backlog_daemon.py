"""The reconciler inside a running jpixd: a Backlog outage shows in the status but not in
readiness, the tickets are listed by the admin API, and a kill -9 between Backlog's 201
and the commit creates no second issue after the restart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from jpixd.loop import Loop
from jpixd.store import Store
from tests.backlogserver import API_KEY, Fault, backlog_server
from tests.conftest import (
    DaemonProcess,
    base_mapping,
    make_config,
    on_backend,
    open_backend,
    running_daemon,
    toml_dumps,
)
from tests.sesnotes import record_bounce, sent_to


def backlog_section(tmp_path: Path, base_url: str) -> dict[str, Any]:
    key = tmp_path / "backlog-api-key"
    key.write_text(API_KEY + "\n")
    return {"base_url": base_url, "api_key_file": str(key), "project_key": "NOC",
            "issue_type": "バウンス", "reconcile_interval": "1s", "timeout": "2s"}


async def settle(loop: Loop) -> None:
    """Two whole rounds: the second one surely started after the caller's change."""
    for _ in range(2):
        done = asyncio.create_task(loop.next_round())
        loop.wake.set()
        await asyncio.wait_for(done, 20)


async def test_an_outage_shows_in_status_not_in_readiness(tmp_path: Path,
                                                          backend_url: str | None) -> None:
    async with backlog_server() as fake:
        fake.faults = [Fault(503)]
        cfg = make_config(tmp_path, backlog=backlog_section(tmp_path, fake.base),
                          **on_backend(backend_url))
        async with running_daemon(cfg) as d, \
                aiohttp.ClientSession(headers=d.headers) as http:
            rt = d.daemon.runtime
            assert rt is not None
            loop = rt.loops["backlog"]
            await sent_to(rt.store, datetime.now(UTC), "down@isp.example.jp")
            await record_bounce(rt.store, "down@isp.example.jp", datetime.now(UTC))
            await settle(loop)
            async with http.get(d.base_url + "/readyz") as resp:
                assert resp.status == 200
            async with http.get(d.base_url + "/admin/v1/status") as resp:
                status = (await resp.json())["backlog"]
            assert status["state"] == "down" and "HTTP 503" in status["error"]
            assert status["tickets"]["intent"] == 1
            assert API_KEY not in str(status)

            fake.faults = []
            await settle(loop)
            async with http.get(d.base_url + "/admin/v1/status") as resp:
                status = (await resp.json())["backlog"]
            assert status["state"] == "ok" and status["tickets"]["open"] == 1
            assert status["rate_limits"]["update"]["remaining"] == 599
            async with http.get(d.base_url + "/admin/v1/tickets",
                                params={"state": "open", "kind": "bounce"}) as resp:
                body = await resp.json()
            [ticket] = body["items"]
            assert (ticket["email"], ticket["issue_key"]) == ("down@isp.example.jp", "NOC-1")
            async with http.get(d.base_url + "/admin/v1/tickets",
                                params={"state": "opened"}) as resp:
                assert resp.status == 400
                assert "state" in (await resp.json())["error"]["fields"]
            async with http.get(d.base_url + "/metrics") as resp:
                text = await resp.text()
            assert 'jpixd_backlog_requests_total{op="create_issue",status="201"} 1.0' in text
            assert 'jpixd_backlog_requests_total{op="project",status="503"}' in text
            assert "jpixd_backlog_open_tickets 1.0" in text


async def test_a_resume_closes_the_guard_issue_at_once(tmp_path: Path,
                                                      backend_url: str | None) -> None:
    paused = datetime.now(UTC)
    store = await open_backend(tmp_path, backend_url)
    await store.set_sending(paused=True, reason="bounce rate 4.00% (8/200)", actor="guard",
                            now=paused)
    await store.request_guard_ticket(reason="bounce rate 4.00% (8/200)", paused_at=paused,
                                     now=paused)
    await store.close()
    async with backlog_server() as fake:
        section = {**backlog_section(tmp_path, fake.base), "reconcile_interval": "1h"}
        cfg = make_config(tmp_path, backlog=section, **on_backend(backend_url))
        async with running_daemon(cfg) as d, \
                aiohttp.ClientSession(headers=d.headers) as http:
            assert d.daemon.runtime is not None
            loop = d.daemon.runtime.loops["backlog"]
            await asyncio.wait_for(loop.first_round.wait(), 20)
            [issue] = fake.issues.values()
            assert issue.priority_id == 2 and issue.status_id == 1
            woken = asyncio.create_task(loop.next_round())
            async with http.post(d.base_url + "/admin/v1/sending/resume") as resp:
                assert resp.status == 200
            await asyncio.wait_for(woken, 20)  # not an hour: the resume woke the loop
            assert issue.status_id == 4
            assert issue.comments == [
                "送信が再開されたため（admin）、jpixd が自動的に完了にしました。"]


async def test_kill_9_between_backlogs_201_and_the_commit(
        tmp_path: Path, daemon_process: Callable[..., DaemonProcess]) -> None:
    cfg = base_mapping(tmp_path)
    store = await Store.open(tmp_path / "state" / "jpixd.sqlite3")
    await store.migrate(datetime.now(UTC))
    await sent_to(store, datetime.now(UTC), "crash@isp.example.jp")
    await record_bounce(store, "crash@isp.example.jp", datetime.now(UTC))
    await store.close()

    async with backlog_server() as fake:
        cfg["backlog"] = backlog_section(tmp_path, fake.base)
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(cfg), encoding="utf-8")
        first = daemon_process(["run", "--config", str(path)])
        created = asyncio.Event()

        def crash(_issue: Any) -> None:
            # Backlog has the issue; jpixd dies before it reads the 201 and commits.
            first.proc.kill()
            created.set()

        fake.after_create = crash
        await asyncio.wait_for(created.wait(), 30)
        fake.after_create = None
        assert await asyncio.to_thread(first.finish, 30) == -9
        db = sqlite3.connect(tmp_path / "state" / "jpixd.sqlite3")
        assert db.execute("SELECT state, attempted_at IS NOT NULL FROM tickets").fetchall() == [
            ("intent", 1)]
        db.close()

        second = daemon_process(["run", "--config", str(path)])
        line = await asyncio.to_thread(
            second.wait_for_event, "Backlog issue found by its marker; not created again", 30)
        assert line["issue"] == "NOC-1"
        second.proc.terminate()
        assert await asyncio.to_thread(second.finish, 30) == 0
        assert len(fake.issues) == 1
        assert fake.count("POST", "/issues") == 1
        assert API_KEY not in "".join(first.lines + second.lines)

    db = sqlite3.connect(tmp_path / "state" / "jpixd.sqlite3")
    assert db.execute("SELECT state, issue_key FROM tickets").fetchall() == [("open", "NOC-1")]
    db.close()
