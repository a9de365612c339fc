"""Mails the self-service pages ask for: a sign-up's confirmation link, a manage link.

Strangers can cause these (anyone can type any address into a form), so each is first a
row in `self_mails`, added only within the limits of `jpixd.selfmail` (per mailbox,
globally, and not to a mailbox that bounced such mail), decided in the transaction that
adds it, so every host shares them. Then it goes through the sender's transport and
token bucket (one rate for everything the SES account sends), never to a suppressed
address, never while sending is paused, and is recorded as sent with its SES message id:
its bounces and complaints are told from notice mail's by that id and judged apart, so
a stranger's form can never pause, slow or endanger notice mail.

A mail to an address nobody has confirmed carries only our own text: no name or
organisation typed into the form, in the body or the `To:` header.

The page that asked answers before the mail is sent (and the same whatever happens to
it), so a queue in memory: a mail lost in a crash is asked for again from the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import structlog

from jpixd.bounces.rules import guard_since
from jpixd.config import BouncesConfig
from jpixd.mail.render import header_text, local_time
from jpixd.mail.sender import Sender
from jpixd.mail.transports import SendError
from jpixd.metrics import Metrics
from jpixd.model import Clock, Subscriber
from jpixd.selfmail import Limits
from jpixd.store import Store
from jpixd.web.links import LinkBuilder

log = structlog.get_logger("jpixd.web")

Kind = Literal["confirm", "manage"]
_SUBJECTS = {"confirm": "【工事・故障情報メール】登録の確認",
             "manage": "【工事・故障情報メール】配信条件の変更"}
_TEMPLATES = {"confirm": "confirm.txt.j2", "manage": "manage-link.txt.j2"}


@dataclass(frozen=True)
class _Request:
    mail_id: int
    kind: Kind
    sub: Subscriber


class SystemMail:
    def __init__(self, store: Store, sender: Sender, links: LinkBuilder, metrics: Metrics,
                 clock: Clock, limits: Limits, bounces: BouncesConfig, *,
                 queue_size: int = 1000) -> None:
        self.store, self.sender, self.links = store, sender, links
        self.metrics, self.clock, self.limits = metrics, clock, limits
        self.bounces = bounces  # its window is the guard's
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()  # set whenever the queue is empty (tests wait on it)
        self.idle.set()
        self.held = False  # past its bounce limit: the operator is told once

    async def window_start(self, now: datetime) -> datetime:
        """Where its bounce count starts: the guard's window, or since the last resume."""
        return guard_since(now, self.bounces, await self.store.sending_state())

    async def request(self, kind: Kind, sub: Subscriber) -> None:
        """Queue a mail if its limits allow; never raises for a limit or a full queue
        (the page's answer must not depend on it)."""
        assert sub.id is not None
        now = self.clock()
        mail_id, refused = await self.store.queue_self_mail(
            kind, sub.id, sub.email, now, self.limits, await self.window_start(now))
        self._tell_held(refused == "held")
        if mail_id is None:
            self._count(kind, refused or "rate_limited")
            log.warning("self-service mail not sent", kind=kind, subscriber_id=sub.id,
                        reason=refused)
            return
        try:
            self._queue.put_nowait(_Request(mail_id, kind, sub))
            self.idle.clear()
        except asyncio.QueueFull:
            self._count(kind, "dropped")
            await self.store.self_mail_not_sent(mail_id, failed=True, reason="queue full")
            log.error("self-service mail dropped: the queue is full", kind=kind,
                      subscriber_id=sub.id)

    def _tell_held(self, held: bool) -> None:
        if held and not self.held:
            log.error("self-service mail held: its bounces and complaints reached "
                      "[web] mail_bounce_limit within the guard window; notice mail is "
                      "not affected", limit=self.limits.bounce_limit)
        elif self.held and not held:
            log.info("self-service mail flows again")
        self.held = held

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

    async def _why_not(self, sub: Subscriber) -> str | None:
        if self.sender.shadow:
            return "shadow"
        if (await self.store.sending_state()).paused:
            return "paused"
        if await self.store.is_suppressed(sub.email):
            return "suppressed"
        return None

    async def _send(self, req: _Request) -> None:
        sub, sid, now = req.sub, req.sub.id, self.clock()
        assert sid is not None
        why = await self._why_not(sub)
        if why is not None:
            self._count(req.kind, why)
            await self.store.self_mail_not_sent(req.mail_id, failed=False, reason=why)
            log.warning("self-service mail not sent", kind=req.kind, subscriber_id=sub.id,
                        reason=why)
            return
        if req.kind == "confirm":
            url, expires = self.links.confirm(sid, now), now + self.links.confirm_ttl
            # Nobody has confirmed what was typed into the form: our own text only.
            sub = replace(sub, name="", organization="")
        else:
            url, expires = self.links.manage(sid, now), now + self.links.manage_ttl
        renderer = self.sender.renderer
        body = renderer.page_text(_TEMPLATES[req.kind], subscriber=sub, url=url,
                                  expires=local_time(expires, renderer.tz))
        message_id = (f"<jpixd.s.{req.kind}.{sid}.{secrets.token_hex(6)}@"
                      f"{renderer.domain}>")
        mail = renderer.compose(sub, header_text(_SUBJECTS[req.kind]), body, now=now,
                                message_id=message_id, extra=[])
        await self.sender.bucket.acquire()
        transport = self.sender.transport
        try:
            ses_id = await transport.send(mail)
        except SendError as err:
            self._count(req.kind, "failed")
            await self.store.self_mail_not_sent(req.mail_id, failed=True, reason=err.reason)
            log.warning("self-service mail refused by the transport", kind=req.kind,
                        subscriber_id=sub.id, error=err.reason)
            return
        await self.store.self_mail_sent(req.mail_id, self.clock(), transport=transport.name,
                                        message_id=message_id, ses_message_id=ses_id)
        self._count(req.kind, "sent")
        self.metrics.emails_sent.labels(transport.name).inc()  # the account's volume
        log.info("self-service mail sent", kind=req.kind, subscriber_id=sub.id,
                 ses_message_id=ses_id, at=datetime.isoformat(now))

    def _count(self, kind: Kind, result: str) -> None:
        self.metrics.web_mails.labels(kind, result).inc()
