"""The outbox's decisions as pure rules (issue 16: one implementation for every store):
what an operator's "send now" does, what a new revision retires, and what a change to a
subscriber does to their mail not yet sent."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jpixd.fanout import retires
from jpixd.model import Change, DeliveryState, NoticeStatus, Subscriber, SubscriberStatus
from jpixd.outbox import Retry, retry_action
from jpixd.subscribers import unsent_mail_after


@pytest.mark.parametrize(("state", "action"), [
    (DeliveryState.FAILED, Retry.RESEND), (DeliveryState.SKIPPED, Retry.RESEND),
    (DeliveryState.RETRY, Retry.RESEND), (DeliveryState.SUPPRESSED, Retry.RESEND),
    (DeliveryState.PENDING, Retry.HURRY), (DeliveryState.SENT, None),
    (DeliveryState.SENDING, None), (DeliveryState.SHADOW, None),
])
def test_what_send_now_does(state: DeliveryState, action: Retry | None) -> None:
    assert retry_action(state) == action


def test_a_new_revision_retires_stale_mail_and_reminders() -> None:
    assert retires(Change.NEW, NoticeStatus.OCCURRED, first_seen=True) == (False, None)
    assert retires(Change.UPDATE, NoticeStatus.SCHEDULED, first_seen=False) == (
        True, "replanned")
    assert retires(Change.CANCEL, NoticeStatus.CANCELLED, first_seen=False) == (
        True, "notice cancelled")
    supersede, why = retires(Change.SILENT, NoticeStatus.SCHEDULED, first_seen=False)
    assert not supersede and why is None  # a silent revision changes no mail
    assert retires(Change.WITHDRAW, NoticeStatus.WITHDRAWN, first_seen=False)[1] == \
        "notice withdrawn"


def test_what_a_change_to_a_subscriber_does_to_their_waiting_mail() -> None:
    sub = Subscriber(email="a@isp.example.jp")
    assert unsent_mail_after(sub, replace(sub, name="新しい名前")) is None
    assert unsent_mail_after(sub, replace(sub, email="b@isp.example.jp")) == ("readdress",
                                                                            None)
    assert unsent_mail_after(sub, replace(sub, paused=True)) == ("skip", "subscriber paused")
    assert unsent_mail_after(sub, replace(sub, status=SubscriberStatus.UNSUBSCRIBED)) == (
        "skip", "subscriber unsubscribed")
