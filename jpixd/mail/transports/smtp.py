"""SMTP through aiosmtplib: STARTTLS or implicit TLS, AUTH, and a pool of connections
reused across messages (also SES's SMTP interface, which answers 454 when throttling)."""

from __future__ import annotations

import asyncio
import re
import ssl

import aiosmtplib

from jpixd.config import SmtpConfig
from jpixd.mail.render import Rendered
from jpixd.mail.transports import ACCOUNT_REFUSAL, Failure, SendError

# A 5xx that speaks of the sender or the account, not of this message: SES's SMTP
# interface says "Email address is not verified", "Sending paused for this account", …
_ACCOUNT = ACCOUNT_REFUSAL


def classify(exc: Exception) -> SendError:
    """What an SMTP error means for the sender. Errors about our login, our sender address
    or the account pause sending (as SES's API errors do) instead of failing every mail
    one after another; a refused recipient fails its own delivery only."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        r = exc.recipients[0]
        return _by_code(r.code, r.message)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendError(Failure.PAUSED, f"SMTP login refused: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return SendError(Failure.PAUSED, f"SMTP refused our sender address {exc.sender}: "
                                         f"{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, exc.message)
    return SendError(Failure.TRANSIENT, f"{type(exc).__name__}: {exc}")


def _by_code(code: int, message: str) -> SendError:
    text = f"SMTP {code} {message}".strip()
    if code == 454 or "throttl" in message.lower():
        return SendError(Failure.THROTTLED, text)
    if code in (530, 535, 534, 538):  # authentication: our configuration, not the mail
        return SendError(Failure.PAUSED, text)
    if 400 <= code < 500:
        return SendError(Failure.TRANSIENT, text)
    if _ACCOUNT.search(message):
        return SendError(Failure.PAUSED, text)
    return SendError(Failure.PERMANENT, text)


# SES's SMTP interface answers DATA with "250 Ok <SES message id>": the id its bounce and
# complaint notifications carry, kept so that they can be tied to their delivery.
_SES_REPLY = re.compile(r"^Ok ([0-9a-f]{16}-[0-9a-f-]{20,})$", re.I)


def provider_id(reply: str) -> str | None:
    m = _SES_REPLY.match(reply.strip())
    return m.group(1) if m else None


class SmtpTransport:
    name = "smtp"

    def __init__(self, cfg: SmtpConfig, tls_context: ssl.SSLContext | None = None) -> None:
        assert cfg.host is not None
        self.cfg = cfg
        # Loading the system's CA bundle takes 20 ms: only when the connection is TLS.
        self.tls_context = tls_context or (
            ssl.create_default_context() if cfg.tls or cfg.starttls else None)
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(cfg.pool_size)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.cfg.host, port=self.cfg.port, use_tls=self.cfg.tls,
            start_tls=self.cfg.starttls and not self.cfg.tls, tls_context=self.tls_context,
            timeout=self.cfg.timeout.total_seconds())
        await client.connect()
        if self.cfg.username:
            assert self.cfg.password is not None
            await client.login(self.cfg.username, self.cfg.password.get())
        return client

    async def send(self, mail: Rendered) -> str | None:
        async with self._slots:
            client = None
            while not self._idle.empty():
                candidate = self._idle.get_nowait()
                if candidate.is_connected:
                    client = candidate
                    break
            try:
                if client is None:
                    client = await self._connect()
                _refused, reply = await client.sendmail(mail.sender, [mail.recipient],
                                                        mail.data)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if client is not None:
                    await _quietly_close(client)  # a broken connection is not reused
                raise classify(exc) from None
            self._idle.put_nowait(client)
            return provider_id(reply)

    async def close(self) -> None:
        while not self._idle.empty():
            await _quietly_close(self._idle.get_nowait())


async def _quietly_close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
