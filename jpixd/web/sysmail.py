"""Mails the self-service pages ask for: a sign-up's confirmation link, a manage link.

Strangers can cause these (anyone can type any address into a form), so each is a row of
the one outbox (`deliveries`, purpose "confirm" or "manage"), added only within the
limits of `jpixd.selfmail` (per mailbox, globally, and not to a mailbox that bounced such
mail), decided in the transaction that adds it, so every host shares them. The row is
the mail: the sender claims it, renders it (`jpixd.mail.selfservice`) and sends it
through the one way out (`jpixd.mail.outbound`) on the account's one rate, never to a
suppressed address, never while sending is paused, retried like any mail and sent again
after a crash; it is recorded as sent with its SES message id, so its bounces and
complaints are told from notice mail's and judged apart: a stranger's form can never
pause, slow or endanger notice mail.

The page that asked answers as soon as the row is written (and the same whatever happens
to the mail); the sender is woken at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

import structlog

from jpixd.bounces.rules import guard_since
from jpixd.config import BouncesConfig
from jpixd.metrics import Metrics
from jpixd.model import Clock, Subscriber
from jpixd.selfmail import Limits
from jpixd.store import AnyStore
from jpixd.web.links import LinkBuilder

log = structlog.get_logger("jpixd.web")

Kind = Literal["confirm", "manage"]


class SystemMail:
    def __init__(self, store: AnyStore, wake_sender: Callable[[], None], links: LinkBuilder,
                 metrics: Metrics, clock: Clock, limits: Limits,
                 bounces: BouncesConfig) -> None:
        self.store, self.wake_sender, self.links = store, wake_sender, links
        self.metrics, self.clock, self.limits = metrics, clock, limits
        self.bounces = bounces  # its window is the guard's
        self.held = False  # past its bounce limit: the operator is told once

    async def window_start(self, now: datetime) -> datetime:
        """Where its bounce count starts: the guard's window, or since the last resume."""
        return guard_since(now, self.bounces, await self.store.sending_state())

    async def request(self, kind: Kind, sub: Subscriber) -> None:
        """Queue a mail if its limits allow; never raises for a limit (the page's answer
        must not depend on it)."""
        assert sub.id is not None
        now = self.clock()
        mail_id, refused = await self.store.queue_self_mail(
            kind, sub.id, sub.email, now, self.limits, await self.window_start(now))
        self._tell_held(refused == "held")
        if mail_id is None:
            self.metrics.web_mails.labels(kind, refused or "rate_limited").inc()
            log.warning("self-service mail not sent", kind=kind, subscriber_id=sub.id,
                        reason=refused)
            return
        self.wake_sender()

    def _tell_held(self, held: bool) -> None:
        if held and not self.held:
            log.error("self-service mail held: its bounces and complaints reached "
                      "[web] mail_bounce_limit within the guard window; notice mail is "
                      "not affected", limit=self.limits.bounce_limit)
        elif self.held and not held:
            log.info("self-service mail flows again")
        self.held = held
