"""A real SMTP server on 127.0.0.1 (aiosmtpd) with STARTTLS and AUTH, a trustme
certificate, programmable answers (454 then 250, 550, …) and a record of what arrived."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port

USER, PASSWORD = "jpixd", "s3cret-smtp"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    # Answers to DATA, used in order before falling back to 250.
    answers: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    tls_sessions: int = 0
    on_message: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    # Answers to MAIL FROM, used in order before falling back to 250.
    mail_answers: list[str] = field(default_factory=list)
    # Called at each MAIL FROM, before the answer (a test kills its sender mid-send).
    on_mail_from: Callable[[], None] | None = None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if self.on_mail_from is not None:
            self.on_mail_from()
        with self.lock:
            if self.mail_answers:
                return self.mail_answers.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if session.ssl is not None:
                self.tls_sessions += 1
            answer = self.answers.pop(0) if self.answers else "250 OK"
            if not answer.startswith("250"):
                return answer
            item = Received(envelope.mail_from, list(envelope.rcpt_tos),
                            bytes(envelope.original_content or envelope.content))
            self.received.append(item)
        if self.on_message is not None:
            self.on_message(item)
        return answer  # "250 Ok <id>" as SES's SMTP interface answers, when told to

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER \
            and auth_data.password.decode() == PASSWORD
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpPeer:
    host: str
    port: int
    handler: Handler
    client_tls: ssl.SSLContext
    ca_file: str


@contextmanager
def smtp_server(tmp_dir: str) -> Iterator[SmtpPeer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    ca_file = f"{tmp_dir}/smtp-ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    handler = Handler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="localhost",
        tls_context=server_ctx, require_starttls=True, authenticator=handler.authenticate,
        auth_required=True, auth_require_tls=True, decode_data=False)
    controller.start()
    try:
        yield SmtpPeer("127.0.0.1", port, handler, client_ctx, ca_file)
    finally:
        controller.stop()
