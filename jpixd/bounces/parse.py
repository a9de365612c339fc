"""SES notifications as they arrive from SQS, parsed into events. Pure and total: any
JSON text gives events or NotificationError, nothing else.

Both shapes: the SNS envelope (`Type: Notification`, `Message` a JSON *string* — or an
object, as moto's simulator sends it) and raw message delivery (the SES JSON itself).
Both `notificationType` (identity notifications) and `eventType` (configuration-set event
publishing). One event per recipient. Unknown extra fields are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jpixd.subscribers import normalise_email

KNOWN_TYPES = {"Bounce", "Complaint", "Delivery", "DeliveryDelay", "Reject", "Send", "Open",
               "Click", "Rendering Failure", "Subscription"}


class NotificationError(Exception):
    """The message is not an SES notification we can read; it goes to the quarantine."""


@dataclass(frozen=True)
class MailEvent:
    key: str  # unique per (notification, recipient): redeliveries are recognised
    type: str  # Bounce, Complaint, Delivery, …
    subtype: str | None  # "Permanent/General", "Transient/MailboxFull", "abuse", …
    recipient: str
    ses_message_id: str | None
    occurred_at: datetime
    diagnostic: str | None
    raw: str  # the SES JSON, verbatim, for the record

    @property
    def bounce_type(self) -> str | None:
        return self.subtype.split("/")[0] if self.type == "Bounce" and self.subtype else None

    @property
    def bounce_subtype(self) -> str | None:
        if self.type != "Bounce" or not self.subtype or "/" not in self.subtype:
            return None
        return self.subtype.split("/", 1)[1]


def parse_time(value: Any, where: str) -> datetime:
    """`2016-01-27T14:59:38.237Z` and `2018-10-08T14:05:45 +0000`, both as SES sends."""
    if not isinstance(value, str) or not value:
        raise NotificationError(f"{where}: missing or not a string")
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 6 and text[-6] == " " and text[-5] in "+-":  # " +0000"
        text = text[:-6] + text[-5:-2] + ":" + text[-2:]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise NotificationError(f"{where}: {value!r} is not a time") from None
    if dt.tzinfo is None:
        raise NotificationError(f"{where}: {value!r} has no time zone")
    # Range-checked here, not by the database: year 1 or 9999 is no SES event.
    try:
        utc = dt.astimezone(UTC)
    except OverflowError:
        raise NotificationError(f"{where}: {value!r} is out of range") from None
    if not 2000 <= utc.year <= 2100:
        raise NotificationError(f"{where}: {value!r} is out of range (2000–2100)")
    return dt


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotificationError(f"{where}: not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise NotificationError(f"{where}: missing or empty")
    return value


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or "@" not in value:
        raise NotificationError(f"{where}: {value!r} is not an address")
    # SES may send "Name <a@b>"; and our deliveries hold normalised addresses.
    text = value.rsplit("<", 1)[-1].rstrip(">").strip()
    try:
        return normalise_email(text)
    except ValueError as exc:
        # Not an address we could ever have sent to: suppressing it would make a row
        # nobody can lift. The message goes to the quarantine instead.
        raise NotificationError(f"{where}: {exc}") from None


# SES's documented bounce subtypes and complaint feedback types: a metric label takes
# these values only, so a message cannot create series at will.
_KNOWN_SUBTYPES = frozenset({
    "Permanent", "Transient", "Undetermined", "General", "NoEmail", "Suppressed",
    "OnAccountSuppressionList", "MailboxFull", "MessageTooLarge", "ContentRejected",
    "AttachmentRejected", "abuse", "auth-failure", "fraud", "not-spam", "other", "virus",
})


# The (type, subtype label) pairs SES documents for the notifications jpixd records: their
# counters exist from start-up (SPEC §9), so that an alert on them sees a 0, not nothing.
SERIES = (
    *(("Bounce", f"{t}/{s}") for t, subs in (
        ("Undetermined", ("Undetermined",)),
        ("Permanent", ("General", "NoEmail", "Suppressed", "OnAccountSuppressionList")),
        ("Transient", ("General", "MailboxFull", "MessageTooLarge", "ContentRejected",
                       "AttachmentRejected"))) for s in subs),
    *(("Complaint", s) for s in ("", "abuse", "auth-failure", "fraud", "not-spam", "other",
                                 "virus")),
    ("Delivery", ""),
)


def label(subtype: str | None) -> str:
    """A bounded metric label for a subtype such as "Permanent/General"."""
    if not subtype:
        return ""
    parts = subtype.split("/")
    if all(p in _KNOWN_SUBTYPES for p in parts) and len(parts) <= 2:
        return subtype
    return "other"


def unwrap(body: str) -> tuple[dict[str, Any], str | None, str | None]:
    """(SES notification, SNS MessageId, TopicArn) from an SQS body of either shape."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # also 4,300-digit integers
        raise NotificationError(f"body is not JSON we can read: {str(exc)[:200]}") from None
    doc = _obj(doc, "body")
    if "Type" in doc and ("Message" in doc or doc.get("Type") != "Notification"):
        if doc.get("Type") != "Notification":
            raise NotificationError(f"SNS {doc.get('Type')!r} message, not a notification")
        message = doc["Message"]
        if isinstance(message, str):
            try:
                message = json.loads(message)
            except (ValueError, RecursionError) as exc:
                raise NotificationError(
                    f"SNS Message is not JSON we can read: {str(exc)[:200]}") from None
        sns_id = doc.get("MessageId") if isinstance(doc.get("MessageId"), str) else None
        topic = doc.get("TopicArn") if isinstance(doc.get("TopicArn"), str) else None
        return _obj(message, "Message"), sns_id, topic
    return doc, None, None


def parse(body: str) -> tuple[list[MailEvent], str | None]:
    """Events (one per recipient) and the SNS TopicArn, if any."""
    ses, sns_id, topic = unwrap(body)
    kind = ses.get("notificationType") or ses.get("eventType")
    if not isinstance(kind, str) or not kind:
        raise NotificationError("neither notificationType nor eventType")
    if kind == "AmazonSnsSubscriptionSucceeded":
        raise NotificationError("SNS subscription notice, not a mail event")
    mail = _obj(ses.get("mail"), "mail")
    ses_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    raw = json.dumps(ses, ensure_ascii=False, sort_keys=True)
    parts = _recipients(kind, ses, mail)
    events = []
    for recipient, subtype, diagnostic, when, feedback in parts:
        base = feedback or sns_id or ses_id
        if not base:
            raise NotificationError("no feedbackId, SNS MessageId or mail.messageId to "
                                    "identify the notification")
        key = f"{base}|{kind}|{recipient}" if not feedback else f"{feedback}|{recipient}"
        events.append(MailEvent(key=key, type=kind, subtype=subtype, recipient=recipient,
                                ses_message_id=ses_id, occurred_at=when,
                                diagnostic=diagnostic, raw=raw))
    return events, topic


Part = tuple[str, str | None, str | None, datetime, str | None]


def _recipients(kind: str, ses: dict[str, Any], mail: dict[str, Any]) -> list[Part]:
    if kind == "Bounce":
        return _bounce(_obj(ses.get("bounce"), "bounce"))
    if kind == "Complaint":
        return _complaint(_obj(ses.get("complaint"), "complaint"))
    if kind == "Delivery":
        d = _obj(ses.get("delivery"), "delivery")
        when = parse_time(d.get("timestamp"), "delivery.timestamp")
        smtp = d.get("smtpResponse") if isinstance(d.get("smtpResponse"), str) else None
        return [(_address(r, "delivery.recipients[]"), None, smtp, when, None)
                for r in _list(d.get("recipients"), "delivery.recipients")]
    if kind == "DeliveryDelay":
        d = _obj(ses.get("deliveryDelay"), "deliveryDelay")
        when = parse_time(d.get("timestamp"), "deliveryDelay.timestamp")
        delay = d.get("delayType") if isinstance(d.get("delayType"), str) else None
        return _diagnosed(d, "deliveryDelay", "delayedRecipients", delay, when, None)
    if kind not in KNOWN_TYPES:
        raise NotificationError(f"unknown notification type {kind!r}")
    # Send, Reject, Open, Click, …: the mail's own destination and time.
    when = parse_time(mail.get("timestamp"), "mail.timestamp")
    reason = None
    if kind == "Reject" and isinstance(ses.get("reject"), dict):
        reason = ses["reject"].get("reason") if isinstance(ses["reject"].get("reason"), str) \
            else None
    return [(_address(r, "mail.destination[]"), None, reason, when, None)
            for r in _list(mail.get("destination"), "mail.destination")]


def _bounce(b: dict[str, Any]) -> list[Part]:
    btype, bsub = b.get("bounceType"), b.get("bounceSubType")
    if not isinstance(btype, str) or not btype:
        raise NotificationError("bounce.bounceType: missing")
    subtype = f"{btype}/{bsub}" if isinstance(bsub, str) and bsub else btype
    when = parse_time(b.get("timestamp"), "bounce.timestamp")
    feedback = b.get("feedbackId") if isinstance(b.get("feedbackId"), str) else None
    return _diagnosed(b, "bounce", "bouncedRecipients", subtype, when, feedback)


def _diagnosed(obj: dict[str, Any], name: str, key: str, subtype: str | None,
               when: datetime, feedback: str | None) -> list[Part]:
    """One part per entry of `obj[key]` (objects with emailAddress and an optional
    diagnosticCode), as bounces and delivery delays list their recipients."""
    out: list[Part] = []
    for r in _list(obj.get(key), f"{name}.{key}"):
        r = _obj(r, f"{name}.{key}[]")
        diag = r.get("diagnosticCode") if isinstance(r.get("diagnosticCode"), str) else None
        out.append((_address(r.get("emailAddress"), f"{key}[].emailAddress"),
                    subtype, diag, when, feedback))
    return out


def _complaint(c: dict[str, Any]) -> list[Part]:
    when = parse_time(c.get("timestamp"), "complaint.timestamp")
    feedback = c.get("feedbackId") if isinstance(c.get("feedbackId"), str) else None
    ftype = c.get("complaintFeedbackType") if isinstance(c.get("complaintFeedbackType"),
                                                         str) else None
    sub = c.get("complaintSubType") if isinstance(c.get("complaintSubType"), str) else None
    return [(_address(_obj(r, "complaint.complainedRecipients[]").get("emailAddress"),
                      "complainedRecipients[].emailAddress"), ftype or sub, None, when, feedback)
            for r in _list(c.get("complainedRecipients"), "complaint.complainedRecipients")]
