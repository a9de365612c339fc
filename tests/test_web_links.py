"""Signed links (issue 14): what a stranger can do with one, or without one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jpixd.web.guard import Proxies, RateLimit
from jpixd.web.links import LinkBuilder, Purpose, Signer

OLD, NEW = "o" * 32, "n" * 32
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_link_works_for_its_subscriber_and_purpose_only() -> None:
    s = Signer([OLD])
    token = s.sign(7, Purpose.MANAGE, NOW + timedelta(days=90))
    link = s.verify(token, Purpose.MANAGE, NOW)
    assert link is not None and link.subscriber_id == 7
    assert s.verify(token, Purpose.UNSUBSCRIBE, NOW) is None  # cross-purpose
    assert s.verify(token, Purpose.CONFIRM, NOW) is None
    assert s.verify(token.replace("m7.", "m8.", 1), Purpose.MANAGE, NOW) is None  # another id
    assert s.verify(token.replace("m7.", "u7.", 1), Purpose.UNSUBSCRIBE, NOW) is None


@pytest.mark.parametrize("change", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character of the MAC
    lambda t: t.replace(".", ".1", 1),  # the expiry moved
    lambda t: t + "x", lambda t: "", lambda t: "m7", lambda t: t.upper(),
    lambda t: t.replace("7", "７", 1),  # a full-width digit is not a digit here
])
def test_a_tampered_link_is_refused(change: object) -> None:
    s = Signer([OLD])
    token = s.sign(7, Purpose.MANAGE, NOW + timedelta(days=1))
    assert callable(change)
    assert s.verify(change(token), Purpose.MANAGE, NOW) is None


def test_expiry_is_enforced_and_only_unsubscribe_and_calendar_may_not_expire() -> None:
    s = Signer([OLD])
    token = s.sign(7, Purpose.CONFIRM, NOW + timedelta(hours=48))
    assert s.verify(token, Purpose.CONFIRM, NOW + timedelta(hours=47)) is not None
    assert s.verify(token, Purpose.CONFIRM, NOW + timedelta(hours=49)) is None
    forever = s.sign(7, Purpose.UNSUBSCRIBE, None)
    assert s.verify(forever, Purpose.UNSUBSCRIBE, NOW + timedelta(days=3650)) is not None
    with pytest.raises(ValueError):
        s.sign(7, Purpose.MANAGE, None)
    # A "never" manage link forged by rewriting the expiry to 0 fails on its MAC and on
    # the rule alike.
    forged = token.split(".")[0] + ".0." + token.split(".")[2]
    assert s.verify(forged.replace("c", "m", 1), Purpose.MANAGE, NOW) is None


def test_adding_a_key_keeps_old_links_and_removing_one_retires_them() -> None:
    old_token = Signer([OLD]).sign(7, Purpose.UNSUBSCRIBE, None)
    rotated = Signer([NEW, OLD])
    assert rotated.verify(old_token, Purpose.UNSUBSCRIBE, NOW) is not None
    new_token = rotated.sign(7, Purpose.UNSUBSCRIBE, None)
    assert new_token != old_token  # the first key signs
    assert Signer([NEW]).verify(new_token, Purpose.UNSUBSCRIBE, NOW) is not None
    assert Signer([NEW]).verify(old_token, Purpose.UNSUBSCRIBE, NOW) is None


def test_digests_verify_with_any_key() -> None:
    d = Signer([OLD]).digest("csrf|abc")
    assert Signer([NEW, OLD]).check_digest("csrf|abc", d)
    assert not Signer([NEW]).check_digest("csrf|abc", d)
    assert not Signer([OLD]).check_digest("csrf|abd", d)
    assert not Signer([OLD]).check_digest("csrf|abc", d + "\udcff")


def test_link_builder_urls() -> None:
    b = LinkBuilder("https://notice.example.jp/", Signer([OLD]),
                    confirm_ttl=timedelta(hours=48), manage_ttl=timedelta(days=90))
    assert b.unsubscribe(3).startswith("https://notice.example.jp/unsubscribe?t=u3.0.")
    assert b.manage(3, NOW).startswith("https://notice.example.jp/s/manage?t=m3.")
    assert b.calendar(3).startswith("https://notice.example.jp/s/calendar.ics?t=k3.0.")


def test_rate_limit_slides() -> None:
    t = [0.0]
    limit = RateLimit(2, window=60, clock=lambda: t[0])
    assert limit.allow("a") and limit.allow("a") and not limit.allow("a")
    assert limit.allow("b")
    t[0] = 61
    assert limit.allow("a")


def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    class Req:
        def __init__(self, remote: str, xff: str, proto: str = "") -> None:
            self.remote = remote
            self.headers = {"X-Forwarded-For": xff, "X-Forwarded-Proto": proto}
            self.secure = False

    p = Proxies(["10.0.0.0/16"])
    # The client wrote a fake first hop; the ALB appended the real one.
    assert p.client(Req("10.0.1.5", "1.2.3.4, 203.0.113.9", "https")) == "203.0.113.9"  # type: ignore[arg-type]
    assert p.secure(Req("10.0.1.5", "203.0.113.9", "https"))  # type: ignore[arg-type]
    assert p.client(Req("198.51.100.7", "1.2.3.4")) == "198.51.100.7"  # type: ignore[arg-type]
    assert not p.secure(Req("198.51.100.7", "", "https"))  # type: ignore[arg-type]
    # A site whose links are https sets Secure cookies whatever the proxy says.
    assert Proxies([], https_site=True).secure(Req("198.51.100.7", "", ""))  # type: ignore[arg-type]
