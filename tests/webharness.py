"""A daemon with its public pages for the web tests: a JSON feed the test writes, the
file transport, and helpers that read mail as a mail client would."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from jpixd.config import Config, load_mapping
from jpixd.model import Clock, DeliveryState, utcnow
from jpixd.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, RunningDaemon, base_mapping, free_port, running_daemon

KEY = "k" * 32
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def web_mapping(tmp_path: Path, *, keys: tuple[str, ...] = (KEY,), port: int | None = None,
                **overrides: Any) -> dict[str, Any]:
    port = port or free_port()
    keys_file = tmp_path / "web-keys"
    keys_file.write_text("\n".join(keys) + "\n")
    data = base_mapping(tmp_path, **overrides)
    data["http"] = {**data["http"], "public_listen": f"127.0.0.1:{port}"}
    data["web"] = {"base_url": f"http://127.0.0.1:{port}", "secret_keys_file": str(keys_file),
                   **data.get("web", {})}
    data.setdefault("sources", [{
        "name": "local", "kind": "json", "carrier": "east",
        "url": (tmp_path / "feed.json").as_uri(), "interval": "1h",
        "send_on_first_poll": True}])
    return data


def web_config(tmp_path: Path, **kw: Any) -> Config:
    data = web_mapping(tmp_path, **kw)
    write_feed(tmp_path, [])
    return load_mapping(data, base_dir=tmp_path, env={})


def write_feed(tmp_path: Path, notices: list[dict[str, Any]]) -> None:
    (tmp_path / "feed.json").write_text(json.dumps({"notices": notices}, ensure_ascii=False),
                                        encoding="utf-8")


@dataclass
class Site:
    d: RunningDaemon
    rt: Runtime
    public: str  # http://127.0.0.1:port
    http: aiohttp.ClientSession  # a browser: keeps cookies
    outbox: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def form(self, path: str) -> tuple[str, str]:
        """GET a page; (its HTML, its CSRF token)."""
        async with self.http.get(self.public + path) as r:
            assert r.status == 200, (path, r.status)
            text = await r.text()
        m = CSRF.search(text)
        assert m is not None, f"no CSRF token on {path}"
        return text, html.unescape(m.group(1))

    async def mail_settled(self) -> None:
        """Sender rounds until no self-service mail waits (the sender sends it now)."""
        sender = self.rt.loops["sender"]
        for _ in range(50):
            mails, _ = await self.rt.store.list_self_mails(limit=1000)
            if not any(m["state"] in ("pending", "retry", "sending") for m in mails):
                return
            self.rt.wake("sender")
            await asyncio.wait_for(sender.next_round(), 10)
        raise AssertionError("self-service mail did not settle")

    def mails_to(self, email: str) -> list[EmailMessage]:
        out = []
        for path in sorted(self.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
            msg = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(msg, EmailMessage)
            if email in str(msg["To"]):
                out.append(msg)
        return out

    async def poll(self) -> dict[str, Any]:
        async with self.http.post(self.d.base_url + "/admin/v1/sources/local/poll",
                                  headers=self.admin) as r:
            assert r.status == 200
            report: dict[str, Any] = await r.json()
            return report

    async def send_all(self) -> None:
        """Sender rounds until nothing is due now."""
        sender = self.rt.loops["sender"]
        for _ in range(50):
            # Due first, then in flight: the running sender may claim a row between the
            # two reads, and read the other way round a row claimed in between was in
            # neither (seen once on PostgreSQL: the test found it still `sending`).
            due = await self.rt.store.next_due_at()
            counts = await self.rt.store.delivery_counts()
            if counts[DeliveryState.SENDING] == 0 and (due is None or due > self.rt.clock()):
                return
            self.rt.wake("sender")
            await asyncio.wait_for(sender.next_round(), 10)
        raise AssertionError("the sender did not settle")


def body_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def link_in(msg: EmailMessage, path: str) -> str:
    m = re.search(rf"(http://\S+{re.escape(path)}\?t=\S+)", body_of(msg))
    assert m is not None, f"no {path} link in:\n{body_of(msg)}"
    return m.group(1)


@contextlib.asynccontextmanager
async def site(tmp_path: Path, *, clock: Clock = utcnow, shadow: bool = False,
               **kw: Any) -> AsyncIterator[Site]:
    cfg = web_config(tmp_path, **kw)
    async with running_daemon(cfg, registry=CollectorRegistry(), clock=clock,
                              shadow=shadow) as d, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        rt = d.daemon.runtime
        assert rt is not None and d.daemon.public_bound
        yield Site(d, rt, f"http://{d.daemon.public_bound[0]}", http, tmp_path / "outbox")
