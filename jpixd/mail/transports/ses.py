"""SES v2 SendEmail with raw MIME through aiobotocore, and the account's quota (v1
GetSendQuota: Max24HourSend, MaxSendRate, SentLast24Hours) for the "auto" rate."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from jpixd.awsclients import client_config
from jpixd.config import SesConfig
from jpixd.mail.render import Rendered
from jpixd.mail.transports import ACCOUNT_REFUSAL, Failure, SendError

_THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_PAUSED_CODES = {"AccountSuspendedException", "SendingPausedException",
                 "AccountSendingPausedException", "ConfigurationSetSendingPausedException",
                 "MailFromDomainNotVerifiedException"}
_PERMANENT_CODES = {"MessageRejected", "BadRequestException", "NotFoundException",
                    "InvalidParameterValue"}
# Our role may not send on this identity or configuration set (IAM): every mail alike.
_DENIED_CODES = {"AccessDenied", "AccessDeniedException"}


@dataclass(frozen=True)
class Quota:
    max_24h: float  # -1: unlimited
    max_rate: float
    sent_24h: float

    @property
    def remaining(self) -> float:
        return -1.0 if self.max_24h < 0 else max(self.max_24h - self.sent_24h, 0.0)


def classify(exc: Exception) -> SendError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{code}: {message}".strip(": ")
        if code in _THROTTLE_CODES or "Maximum sending rate exceeded" in message \
                or "Daily message quota exceeded" in message or status == 429:
            return SendError(Failure.THROTTLED, text)
        if code == "LimitExceededException":
            return SendError(Failure.THROTTLED, text)
        if code in _PAUSED_CODES or code in _DENIED_CODES or ACCOUNT_REFUSAL.search(message):
            return SendError(Failure.PAUSED, text)
        if code in _PERMANENT_CODES or 400 <= status < 500:
            return SendError(Failure.PERMANENT, text)
        return SendError(Failure.TRANSIENT, text or f"HTTP {status}")
    return SendError(Failure.TRANSIENT, f"{type(exc).__name__}: {exc}")


class SesTransport:
    name = "ses"

    def __init__(self, cfg: SesConfig) -> None:
        self.cfg = cfg
        self._stack = contextlib.AsyncExitStack()
        self._v2: Any = None
        self._v1: Any = None

    async def start(self) -> None:
        session = get_session()
        # Our own retries (with the token bucket's backoff) replace botocore's.
        boto = client_config(read_timeout=10.0, attempts=1, pool=64)
        self._v2 = await self._stack.enter_async_context(session.create_client(
            "sesv2", region_name=self.cfg.region, endpoint_url=self.cfg.endpoint_url,
            config=boto))
        self._v1 = await self._stack.enter_async_context(session.create_client(
            "ses", region_name=self.cfg.region, endpoint_url=self.cfg.endpoint_url,
            config=boto))

    async def send(self, mail: Rendered) -> str | None:
        args: dict[str, Any] = {
            "FromEmailAddress": mail.sender,
            "Destination": {"ToAddresses": [mail.recipient]},
            "Content": {"Raw": {"Data": mail.data}},
        }
        if self.cfg.configuration_set:
            args["ConfigurationSetName"] = self.cfg.configuration_set
        try:
            resp = await self._v2.send_email(**args)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise classify(exc) from None
        return str(resp["MessageId"])

    async def quota(self) -> Quota:
        resp = await self._v1.get_send_quota()
        return Quota(max_24h=float(resp["Max24HourSend"]), max_rate=float(resp["MaxSendRate"]),
                     sent_24h=float(resp["SentLast24Hours"]))

    async def close(self) -> None:
        await self._stack.aclose()
