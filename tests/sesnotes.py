"""SES notifications in the shapes AWS documents (identity notifications and event
publishing), and the SNS envelope around them, for the bounce tests; and mail recorded
and "sent" to the addresses they are about."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from jpixd.bounces.parse import parse
from jpixd.bounces.rules import decide
from jpixd.config import BouncesConfig
from jpixd.fanout import Policy, planner
from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, Subscriber
from jpixd.records import RecordResult
from jpixd.store import AnyStore


def mail(message_id: str = "0101018f-ses-1", to: list[str] | None = None,
         timestamp: str = "2026-11-28T05:59:38.237Z") -> dict[str, Any]:
    return {"timestamp": timestamp, "source": "notice@example.jp",
            "sourceArn": "arn:aws:ses:ap-northeast-1:123456789012:identity/example.jp",
            "messageId": message_id, "destination": to or ["a@isp.example.jp"],
            "headersTruncated": False,
            "commonHeaders": {"from": ["notice@example.jp"], "subject": "【故障】…"}}


def bounce(recipients: list[str], btype: str = "Permanent", sub: str = "General",
           feedback: str = "fb-1", message_id: str = "0101018f-ses-1",
           timestamp: str = "2026-11-28T06:00:01.123Z", event: bool = False) -> dict[str, Any]:
    return {("eventType" if event else "notificationType"): "Bounce",
            "bounce": {"bounceType": btype, "bounceSubType": sub, "feedbackId": feedback,
                       "timestamp": timestamp, "reportingMTA": "dsn; a8-70.smtp-out.example",
                       "remoteMtaIp": "127.0.2.0",
                       "bouncedRecipients": [{"emailAddress": r, "action": "failed",
                                              "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
                                             for r in recipients]},
            "mail": mail(message_id, recipients), "someNewField": {"ignored": True}}


def complaint(recipients: list[str], feedback: str = "cf-1", ftype: str | None = "abuse",
              message_id: str = "0101018f-ses-1") -> dict[str, Any]:
    c: dict[str, Any] = {"feedbackId": feedback, "timestamp": "2018-10-08T14:05:45 +0000",
                         "userAgent": "ExampleCorp Feedback Loop (V0.01)",
                         "complainedRecipients": [{"emailAddress": r} for r in recipients]}
    if ftype:
        c["complaintFeedbackType"] = ftype
        c["arrivalDate"] = "2018-10-08T14:05:45 +0000"
    return {"notificationType": "Complaint", "complaint": c, "mail": mail(message_id, recipients)}


def delivery(recipients: list[str], message_id: str = "0101018f-ses-1") -> dict[str, Any]:
    return {"notificationType": "Delivery", "mail": mail(message_id, recipients),
            "delivery": {"timestamp": "2026-11-28T06:00:00.500Z", "processingTimeMillis": 546,
                         "recipients": recipients, "smtpResponse": "250 ok: Message accepted",
                         "reportingMTA": "a8-70.smtp-out.example"}}


def sns(ses: dict[str, Any], message_id: str = "sns-1",
        topic: str = "arn:aws:sns:ap-northeast-1:123456789012:ses-events") -> str:
    return json.dumps({
        "Type": "Notification", "MessageId": message_id, "TopicArn": topic,
        "Message": json.dumps(ses, ensure_ascii=False), "Timestamp": "2026-11-28T06:00:02.000Z",
        "SignatureVersion": "1", "Signature": "EXAMPLE==",
        "SigningCertURL": "https://sns.ap-northeast-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.ap-northeast-1.amazonaws.com/?Action=Unsubscribe"},
        ensure_ascii=False)


async def record_failure(store: AnyStore, at: datetime, external_id: str, *,
                         revision: str = "r", change: Change = Change.NEW,
                         carrier: str = "west", title: str = "故障") -> RecordResult:
    """A failure notice (or its next revision) recorded as the feed poller records it,
    with its mail to every subscriber it is for."""
    n = Notice(source="w", external_id=external_id, carrier=carrier,
               kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED, title=title)
    return await store.record_revision(n, revision=revision, change=change, now=at,
                                       planner=planner(n, change, at, Policy(tz=JST)))


async def sent_to(store: AnyStore, now: datetime, *emails: str, ses_ids: bool = True,
                  title: str = "故障") -> None:
    """Subscribers, a notice to them, and its deliveries sent with SES message ids
    `ses-<address>`, so that a bounce can be correlated with its delivery."""
    for e in emails:
        await store.create_subscriber(Subscriber(email=e, carriers=("west",)), now)
    await record_failure(store, now, str(uuid.uuid4()), title=title)
    for d in (await store.list_deliveries(state="pending", limit=1000))[0]:
        await store.mark_sent(d.id, now, transport="ses", message_id=f"<m{d.id}>",
                              ses_message_id=f"ses-{d.email}" if ses_ids else None)


async def record_bounce(store: AnyStore, email: str, at: datetime, *, n: int = 1,
                        btype: str = "Permanent", sub: str = "General") -> None:
    """An SES bounce of `email` at `at`, recorded as the SQS consumer records it (the
    default rules; n makes its feedback and SNS ids unique)."""
    cfg = BouncesConfig()
    body = sns(bounce([email], btype=btype, sub=sub, feedback=f"fb-{n}",
                      message_id=f"ses-{email}",
                      timestamp=at.isoformat().replace("+00:00", "Z")),
               message_id=f"sns-{n}")
    events, _ = parse(body)
    await store.record_events(events, at, soft_window=cfg.soft_bounce_window,
                              decide=lambda ev, k, own: decide(ev, k, cfg, self_service=own))
