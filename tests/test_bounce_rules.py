"""SES notification parsing (pure, total), the suppression rules and the guard."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jpixd.bounces.parse import NotificationError, parse, parse_time
from jpixd.bounces.rules import decide, is_soft_bounce, judge
from jpixd.config import BouncesConfig
from tests.sesnotes import bounce, complaint, delivery, mail, sns

CFG = BouncesConfig()


def test_sns_envelope_with_several_recipients() -> None:
    events, topic = parse(sns(bounce(["A@ISP.example.jp", "b@isp.example.jp"])))
    assert topic == "arn:aws:sns:ap-northeast-1:123456789012:ses-events"
    # Addresses as our deliveries hold them: lower-cased whole (README: security notes).
    assert [e.recipient for e in events] == ["a@isp.example.jp", "b@isp.example.jp"]
    e = events[0]
    assert (e.type, e.subtype, e.bounce_type, e.bounce_subtype) == (
        "Bounce", "Permanent/General", "Permanent", "General")
    assert e.key == "fb-1|a@isp.example.jp" and e.ses_message_id == "0101018f-ses-1"
    assert e.occurred_at == datetime(2026, 11, 28, 6, 0, 1, 123000, tzinfo=UTC)
    assert e.diagnostic == "smtp; 550 5.1.1 user unknown"


def test_raw_delivery_and_event_publishing_read_the_same() -> None:
    raw, _ = parse(json.dumps(bounce(["x@isp.example.jp"], event=True)))
    wrapped, _ = parse(sns(bounce(["x@isp.example.jp"])))
    assert raw[0].key == wrapped[0].key and raw[0].type == wrapped[0].type == "Bounce"


def test_moto_style_envelope_with_an_object_message() -> None:
    body = json.loads(sns(delivery(["d@isp.example.jp"])))
    body["Message"] = json.loads(body["Message"])
    [e], _ = parse(json.dumps(body))
    assert e.type == "Delivery" and e.key == "sns-1|Delivery|d@isp.example.jp"


def test_complaint_with_and_without_feedback_report_and_the_other_time_format() -> None:
    [c], _ = parse(sns(complaint(["c@isp.example.jp"])))
    assert c.subtype == "abuse" and c.key == "cf-1|c@isp.example.jp"
    assert c.occurred_at == datetime(2018, 10, 8, 14, 5, 45, tzinfo=UTC)
    [bare], _ = parse(sns(complaint(["c@isp.example.jp"], ftype=None)))
    assert bare.subtype is None


@pytest.mark.parametrize("kind", ["Send", "Reject", "Open", "Click", "Rendering Failure"])
def test_other_event_types_use_the_mail_destination(kind: str) -> None:
    ses = {"eventType": kind, "mail": mail(to=["o@isp.example.jp"])}
    if kind == "Reject":
        ses["reject"] = {"reason": "Bad content"}
    [e], _ = parse(json.dumps(ses))
    assert e.type == kind and e.recipient == "o@isp.example.jp"
    assert e.key == f"0101018f-ses-1|{kind}|o@isp.example.jp"


def test_delivery_delay() -> None:
    ses = {"eventType": "DeliveryDelay", "mail": mail(),
           "deliveryDelay": {"timestamp": "2026-11-28T07:00:00.000Z", "delayType":
                             "TransientCommunicationFailure",
                             "delayedRecipients": [{"emailAddress": "late@isp.example.jp",
                                                    "status": "4.4.1",
                                                    "diagnosticCode": "smtp; 421"}]}}
    [e], _ = parse(json.dumps(ses))
    assert (e.type, e.subtype, e.diagnostic) == ("DeliveryDelay",
                                                 "TransientCommunicationFailure", "smtp; 421")


@pytest.mark.parametrize(("body", "error"), [
    ("not json", "body is not JSON"),
    ("[]", "body: not an object"),
    ('{"Type": "SubscriptionConfirmation", "Token": "x"}',
     "SNS 'SubscriptionConfirmation' message, not a notification"),
    ('{"Type": "Notification", "Message": "{oops"}', "SNS Message is not JSON"),
    ('{"mail": {}}', "neither notificationType nor eventType"),
    ('{"notificationType": "Bounce", "mail": {"messageId": "m"}}', "bounce: not an object"),
    ('{"notificationType": "Bounce", "mail": {}, "bounce": {"bounceType": "Permanent",'
     ' "timestamp": "2026-11-28T06:00:00Z", "bouncedRecipients": []}}',
     "bounce.bouncedRecipients: missing or empty"),
    ('{"notificationType": "Bounce", "mail": {}, "bounce": {"bounceType": "Permanent",'
     ' "timestamp": "yesterday", "bouncedRecipients": [{"emailAddress": "a@b.jp"}]}}',
     "bounce.timestamp: 'yesterday' is not a time"),
    ('{"notificationType": "Teleport", "mail": {"destination": ["a@b.jp"]}}',
     "unknown notification type 'Teleport'"),
])
def test_unreadable_notifications_say_why(body: str, error: str) -> None:
    with pytest.raises(NotificationError) as info:
        parse(body)
    assert str(info.value).startswith(error)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["Type", "Message", "notificationType", "eventType",
                                         "mail", "bounce", "complaint", "delivery",
                                         "bouncedRecipients", "emailAddress", "timestamp",
                                         "bounceType", "destination", "messageId", "x"]),
                        inner, max_size=5), max_leaves=25))
def test_no_json_value_makes_the_parser_raise_anything_else(value: object) -> None:
    for text in (json.dumps(value), json.dumps({"Type": "Notification",
                                                "Message": json.dumps(value)})):
        try:
            parse(text)
        except NotificationError:
            pass


def test_both_timestamp_forms() -> None:
    assert parse_time("2016-01-27T14:59:38.237Z", "t") == datetime(
        2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)
    assert parse_time("2018-10-08T14:05:45 +0000", "t") == datetime(
        2018, 10, 8, 14, 5, 45, tzinfo=UTC)
    assert parse_time("2018-10-08T23:05:45 +0900", "t") == datetime(
        2018, 10, 8, 14, 5, 45, tzinfo=UTC)


# ---------------------------------------------------------------- rules


@pytest.mark.parametrize(("btype", "sub", "soft", "suppress", "counted"), [
    ("Permanent", "General", 0, True, True),
    ("Permanent", "NoEmail", 0, True, True),
    ("Permanent", "Suppressed", 0, True, True),
    ("Permanent", "OnAccountSuppressionList", 0, True, False),
    ("Transient", "MailboxFull", 1, False, False),
    ("Transient", "MailboxFull", 2, False, False),
    ("Transient", "MailboxFull", 3, True, False),
    ("Transient", "MessageTooLarge", 3, True, False),
    ("Undetermined", "Undetermined", 3, True, False),
])
def test_bounce_rules(btype: str, sub: str, soft: int, suppress: bool, counted: bool) -> None:
    [e], _ = parse(sns(bounce(["r@isp.example.jp"], btype, sub)))
    d = decide(e, soft, CFG)
    assert (d.suppress, d.counted, d.unsubscribe) == (suppress, counted, False)
    assert is_soft_bounce(e) == (btype != "Permanent")


def test_complaints_suppress_and_unsubscribe_and_deliveries_do_nothing() -> None:
    [c], _ = parse(sns(complaint(["c@isp.example.jp"])))
    d = decide(c, 0, CFG)
    assert d.suppress and d.unsubscribe and d.counted and d.reason == "complaint (abuse)"
    [ok], _ = parse(sns(delivery(["d@isp.example.jp"])))
    assert not decide(ok, 0, CFG).suppress


@pytest.mark.parametrize(("sent", "bounces", "complaints", "level"), [
    (150, 30, 0, "ok"),  # below guard_min_volume: too few to judge
    (1000, 24, 0, "ok"),
    (1000, 25, 0, "warn"),  # warn_bounce_rate 2.5 %
    (1000, 39, 0, "warn"),
    (1000, 40, 0, "pause"),  # pause_bounce_rate 4 %, before SES's 5 % review
    (10000, 0, 5, "warn"),  # 0.05 %
    (10000, 0, 8, "pause"),  # 0.08 %, before SES's 0.1 % review
])
def test_the_guard(sent: int, bounces: int, complaints: int, level: str) -> None:
    v = judge(sent, bounces, complaints, CFG)
    assert v.level == level
    if level == "pause":
        assert v.reason.startswith("paused by the guard")


def test_soft_bounce_window_is_configurable() -> None:
    cfg = BouncesConfig(soft_bounce_limit=2, soft_bounce_window=timedelta(days=1))
    [e], _ = parse(sns(bounce(["r@isp.example.jp"], "Transient", "MailboxFull")))
    d = decide(e, 2, cfg)
    assert d.suppress and d.reason == "2 soft bounces within 1 days (Transient/MailboxFull)"


def test_the_guard_window_starts_at_the_last_resume_when_that_is_later() -> None:
    from datetime import UTC, datetime, timedelta

    from jpixd.bounces.rules import guard_since
    from jpixd.config import BouncesConfig
    from jpixd.model import SendingState

    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    cfg = BouncesConfig(guard_window=timedelta(hours=24))
    assert guard_since(now, cfg, SendingState(paused=False)) == now - timedelta(hours=24)
    resumed = now - timedelta(hours=2)
    assert guard_since(now, cfg, SendingState(paused=False, window_start=resumed)) == resumed
    old = now - timedelta(days=3)
    assert guard_since(now, cfg, SendingState(paused=False, window_start=old)) == \
        now - timedelta(hours=24)
