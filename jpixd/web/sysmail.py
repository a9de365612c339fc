"""Mails the self-service pages ask for: a sign-up's confirmation link, a manage link.

They go through the sender's transport and token bucket (one rate for everything the
SES account sends), never to a suppressed address, never while sending is paused, and
at most `mails_per_address_hour` to one address: a form that strangers can fill in must
not become a way to mail-bomb somebody or to raise the bounce rate. The page that asked
answers before the mail is sent (and the same whatever happens to it), so a queue in
memory: a mail lost in a crash is asked for again from the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from jpixd.mail.render import header_text, local_time
from jpixd.mail.sender import Sender
from jpixd.mail.transports import SendError
from jpixd.metrics import Metrics
from jpixd.model import Clock, Subscriber
from jpixd.store import Store
from jpixd.web.guard import RateLimit
from jpixd.web.links import LinkBuilder

log = structlog.get_logger("jpixd.web")

Kind = Literal["confirm", "manage"]
_SUBJECTS = {"confirm": "【工事・故障情報メール】登録の確認",
             "manage": "【工事・故障情報メール】配信条件の変更"}
_TEMPLATES = {"confirm": "confirm.txt.j2", "manage": "manage-link.txt.j2"}


@dataclass(frozen=True)
class _Request:
    kind: Kind
    sub: Subscriber


class SystemMail:
    def __init__(self, store: Store, sender: Sender, links: LinkBuilder, metrics: Metrics,
                 clock: Clock, per_address: RateLimit, *, queue_size: int = 1000) -> None:
        self.store, self.sender, self.links = store, sender, links
        self.metrics, self.clock, self.per_address = metrics, clock, per_address
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()  # set whenever the queue is empty (tests wait on it)
        self.idle.set()

    def request(self, kind: Kind, sub: Subscriber) -> None:
        """Queue a mail; never waits, never raises (the page's answer must not depend
        on it)."""
        if not self.per_address.allow(sub.email):
            self._count(kind, "rate_limited")
            log.warning("self-service mail not sent: too many for this address this hour",
                        kind=kind, subscriber_id=sub.id)
            return
        try:
            self._queue.put_nowait(_Request(kind, sub))
            self.idle.clear()
        except asyncio.QueueFull:
            self._count(kind, "dropped")
            log.error("self-service mail dropped: the queue is full", kind=kind,
                      subscriber_id=sub.id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="self-service-mail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            req = await self._queue.get()
            try:
                await self._send(req)
            except Exception as exc:  # one mail, not the page's mailer
                self._count(req.kind, "failed")
                log.error("self-service mail failed", kind=req.kind, subscriber_id=req.sub.id,
                          error=str(exc))
            if self._queue.empty():
                self.idle.set()

    async def _send(self, req: _Request) -> None:
        sub, now = req.sub, self.clock()
        assert sub.id is not None
        if self.sender.shadow:
            self._count(req.kind, "shadow")
            log.warning("self-service mail not sent: shadow mode", kind=req.kind,
                        subscriber_id=sub.id)
            return
        if (await self.store.sending_state()).paused:
            self._count(req.kind, "paused")
            log.warning("self-service mail not sent: sending is paused", kind=req.kind,
                        subscriber_id=sub.id)
            return
        if await self.store.is_suppressed(sub.email):
            self._count(req.kind, "suppressed")
            log.info("self-service mail not sent: the address is suppressed", kind=req.kind,
                     subscriber_id=sub.id)
            return
        if req.kind == "confirm":
            url, expires = self.links.confirm(sub.id, now), now + self.links.confirm_ttl
        else:
            url, expires = self.links.manage(sub.id, now), now + self.links.manage_ttl
        renderer = self.sender.renderer
        body = renderer.page_text(_TEMPLATES[req.kind], subscriber=sub, url=url,
                                  expires=local_time(expires, renderer.tz))
        mail = renderer.compose(
            sub, header_text(_SUBJECTS[req.kind]), body, now=now,
            message_id=f"<jpixd.s.{req.kind}.{sub.id}.{secrets.token_hex(6)}@"
                       f"{renderer.domain}>", extra=[])
        await self.sender.bucket.acquire()
        try:
            await self.sender.transport.send(mail)
        except SendError as err:
            self._count(req.kind, "failed")
            log.warning("self-service mail refused by the transport", kind=req.kind,
                        subscriber_id=sub.id, error=err.reason)
            return
        self._count(req.kind, "sent")
        log.info("self-service mail sent", kind=req.kind, subscriber_id=sub.id,
                 at=datetime.isoformat(now))

    def _count(self, kind: Kind, result: str) -> None:
        self.metrics.web_mails.labels(kind, result).inc()
