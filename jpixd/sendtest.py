"""`jpixd send-test --to ADDRESS`: a sample notice, rendered as subscribers get it, sent
through the configured transport, with the transport's message id printed — the way to
check a new SES identity, or to follow a bounce from SES's mailbox simulator all the way
to a Backlog issue.

Nothing is written to the database: the test mail is not a delivery, so its bounce (from
bounce@simulator.amazonses.com) arrives as an event for an unknown message, which is
still filed and counted like any other.
"""

from __future__ import annotations

import secrets
import sys
from datetime import UTC, datetime, timedelta

from jpixd.config import Config
from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, Subscriber


def sample_notice(now: datetime) -> Notice:
    start = now.astimezone(JST).replace(second=0, microsecond=0) - timedelta(minutes=20)
    return Notice(
        source="send-test", external_id="send-test", carrier="east",
        kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED,
        title="【送信テスト】東京都の一部地域でフレッツ光ネクストがご利用しづらい状況について",
        body="これは jpixd の送信テストです。実際の故障ではありません。",
        starts_at=start, prefectures=("13",), localities=("新宿区",),
        services=("フレッツ光ネクスト",), url=None)


async def send_test(cfg: Config, to: str) -> int:
    from jpixd.app import build_transport
    from jpixd.mail.render import Renderer
    from jpixd.mail.transports import SendError
    from jpixd.secrets import resolve_ssm
    from jpixd.subscribers import normalise_email

    try:
        address = normalise_email(to)
    except ValueError as exc:
        print(f"jpixd: --to: {exc}", file=sys.stderr)
        return 2
    cfg = await resolve_ssm(cfg)
    now = datetime.now(UTC)
    renderer = Renderer(cfg.mail, b"send-test", cfg.tz)
    sub = Subscriber(email=address, name="送信テスト")
    subject, body = renderer.texts(sample_notice(now), Change.NEW, sub, now)
    message_id = f"<jpixd.test.{secrets.token_hex(8)}@{renderer.domain}>"
    mail = renderer.compose(sub, subject, body, now=now, message_id=message_id,
                            extra=[("X-Jpixd-Test", "send-test")])
    transport = await build_transport(cfg)
    try:
        provider_id = await transport.send(mail)
    except SendError as err:
        print(f"jpixd: send-test to {address} through {transport.name} failed "
              f"({err.failure}): {err.reason}", file=sys.stderr)
        return 1
    finally:
        await transport.close()
    print(f"sent to {address} through {transport.name} ({mail.charset})")
    print(f"Message-ID: {message_id}")
    if provider_id:
        print(f"SES message id: {provider_id}")
    return 0
