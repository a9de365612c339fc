"""Transports behind one interface: `send(mail) -> id` or a classified SendError."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Protocol

from jpixd.mail.render import Rendered


class Failure(StrEnum):
    THROTTLED = "throttled"  # slow down and retry (SES rate, SMTP 454, HTTP 429)
    TRANSIENT = "transient"  # retry with backoff (5xx, timeouts, connection errors)
    PERMANENT = "permanent"  # this message will never go (rejected recipient/content)
    PAUSED = "paused"  # the account cannot send at all: pause everything


# A refusal that concerns the account, the sending identity or the configuration, not
# this message: every other mail would be refused the same way (SES's sandbox rejecting an
# unverified recipient, an identity or MAIL FROM not verified, sending paused). Sending is
# paused with the reason; no delivery is failed for it.
ACCOUNT_REFUSAL = re.compile(
    r"not verified|sending paused|account.{0,40}(suspended|paused|disabled)"
    r"|MailFromDomainNotVerified|AccountSendingPaused|sandbox"
    r"|configuration set.{0,40}(does not exist|not found)|not authorized to perform", re.I)


class SendError(Exception):
    def __init__(self, failure: Failure, reason: str) -> None:
        super().__init__(f"{failure}: {reason}")
        self.failure = failure
        self.reason = reason


class Transport(Protocol):
    name: str

    async def send(self, mail: Rendered) -> str | None:
        """Send one message; the provider's id (SES message id) if there is one."""
        ...

    async def close(self) -> None: ...
