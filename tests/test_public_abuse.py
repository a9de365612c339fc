"""The public side under abuse (issue 21, security probe N1–N4, N8, N12): what a stranger
can make jpixd mail, to whom, how often, with what words, and what the bounces of that
mail can do. Black box where it can be: the real daemon, its public pages over HTTP, SES
and SQS on moto, bounces as SES sends them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session

from jpixd.model import DeliveryState, SubscriberStatus, utcnow
from tests.conftest import make_config, on_backend
from tests.sesnotes import bounce, complaint, sns
from tests.test_public_pages import confirmed, sign_up
from tests.webharness import Site, body_of, link_in, site, write_feed

FROM = "noc@example.jp"


async def admin_get(s: Site, path: str) -> Any:
    async with s.http.get(s.d.base_url + "/admin/v1" + path, headers=s.admin) as r:
        assert r.status == 200, (path, r.status, await r.text())
        return await r.json()


def mail_to(s: Site, email: str) -> EmailMessage:
    [mail] = s.mails_to(email)
    return mail


async def sent_to_all(s: Site, title: str, n: int) -> list[Any]:
    """Sender rounds until the notice titled `title` is sent to `n` subscribers (SES on
    moto answers slowly under load: a round may end with mail still in flight)."""
    sender = s.rt.loops["sender"]
    items: list[Any] = []
    try:
        async with asyncio.timeout(60):  # below pytest's per-test timeout (120 s)
            while True:
                notices = (await admin_get(s, "/notices?limit=10"))["items"]
                notice = next((x for x in notices if x["title"] == title), None)
                if notice is not None:
                    items, _ = await s.rt.store.list_deliveries(notice_id=notice["id"],
                                                                limit=100)
                    if len(items) == n and {d.state for d in items} == {DeliveryState.SENT}:
                        return items
                s.rt.wake("sender")
                await sender.next_round()
    except TimeoutError:
        raise AssertionError(f"{title}: not sent to {n} within 60 s: "
                             f"{[str(d.state) for d in items]}") from None


@pytest.fixture
async def sqs_queue(moto_url: str) -> AsyncIterator[tuple[Any, str]]:
    kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": moto_url}
    async with get_session().create_client("sqs", **kw) as sqs, \
            get_session().create_client("ses", **kw) as ses:
        await ses.verify_email_identity(EmailAddress=FROM)
        name = f"abuse-{datetime.now(UTC).timestamp():.6f}".replace(".", "-")
        url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        yield sqs, url


async def test_bounced_confirmations_never_pause_notice_mail(
        tmp_path: Path, moto_url: str, sqs_queue: tuple[Any, str]) -> None:
    """N1: five bogus sign-ups whose confirmations all bounce, against 40 notice mails
    and a guard that pauses at 4 % once 10 mails went out. Before, those five bounces
    and no sends (5/40 = 12.5 %) paused all notice mail."""
    sqs, queue_url = sqs_queue
    ses = {"region": "ap-northeast-1", "endpoint_url": moto_url, "max_send_rate": 500}
    async with site(tmp_path, mail={"from": FROM, "transport": "ses", "ses": ses},
                    bounces={"queue_url": queue_url, "region": "ap-northeast-1",
                             "endpoint_url": moto_url, "wait_time": "1s",
                             "guard_min_volume": 10}) as s:
        for i in range(40):
            async with s.http.post(s.d.base_url + "/admin/v1/subscribers", headers=s.admin,
                                   json={"email": f"noc{i}@isp{i}.example.jp"}) as r:
                assert r.status == 201
        write_feed(tmp_path, [{"id": "F1", "kind": "failure", "title": "故障 1",
                               "prefectures": ["13"]}])
        await s.poll()
        first = await sent_to_all(s, "故障 1", 40)
        assert all(d.ses_message_id for d in first)

        for i in range(5):
            r = await sign_up(s, f"nobody{i}@bogus{i}.example.net")
            assert r.status == 303
        await s.mail_settled()
        own = (await admin_get(s, "/self-mails"))["items"]
        assert len(own) == 5 and all(m["state"] == "sent" and m["ses_message_id"]
                                     for m in own)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        for i, m in enumerate(own):
            note = bounce([m["email"]], feedback=f"fb-abuse-{i}",
                          message_id=m["ses_message_id"], timestamp=now)
            await sqs.send_message(QueueUrl=queue_url, MessageBody=sns(note, f"sns-abuse-{i}"))
        consumer = s.rt.loops["bounces"]
        for _ in range(20):  # each round: a receive, its events recorded, then the guard
            await asyncio.wait_for(consumer.next_round(), 15)
            if (await admin_get(s, "/bounces"))["total"] == 5:
                break
        await asyncio.wait_for(consumer.next_round(), 15)  # the guard has judged them

        status = await admin_get(s, "/status")
        assert status["sending"]["paused"] is False, status["sending"]
        assert status["self_service"]["bounces_and_complaints_in_window"] == 5
        assert status["self_service"]["held"] is False
        # Never a suppression, the sign-ups simply unconfirmed.
        assert (await admin_get(s, "/suppressions"))["total"] == 0
        for m in own:
            sub = await s.rt.store.subscriber_by_email(m["email"])
            assert sub is not None and sub.status == SubscriberStatus.PENDING

        write_feed(tmp_path, [{"id": "F2", "kind": "failure", "title": "故障 2",
                               "prefectures": ["13"]}])
        await s.poll()
        await sent_to_all(s, "故障 2", 40)  # all 40, none held back by a pause


async def test_a_bounced_or_complained_self_mail_files_no_case_and_suppresses_nothing(
        tmp_path: Path, backend_url: str | None) -> None:
    """With Backlog on (cases filed), in the store on both backends: the bounce and the
    complaint of a confirmation mail are recorded, counted for its own limit only."""
    from jpixd.app import open_store
    from jpixd.bounces.parse import parse
    from jpixd.bounces.rules import decide
    from jpixd.config import BouncesConfig
    from jpixd.model import utcnow
    from jpixd.selfmail import Limits

    cfg = BouncesConfig()
    # The store alone: a running sender would claim these rows and send them itself.
    store, now = await open_store(make_config(tmp_path, **on_backend(backend_url)),
                                  utcnow), utcnow()
    try:
        limits = Limits(per_mailbox_hour=3, per_hour=100, bounce_limit=10)
        ids = []
        for email in ("gone@bogus.example.net", "angry@isp.example.jp"):
            mid, why = await store.queue_self_mail("confirm", 1, email, now, limits, now)
            assert mid is not None and why is None
            await store.mark_sent(mid, now, transport="ses", message_id="<m>",
                                  ses_message_id=f"ses-own-{mid}")
            ids.append(mid)
        stamp = now.isoformat()
        notes = [bounce(["gone@bogus.example.net"], feedback="fb-own",
                        message_id=f"ses-own-{ids[0]}", timestamp=stamp),
                 complaint(["angry@isp.example.jp"], feedback="cf-own",
                           message_id=f"ses-own-{ids[1]}")]
        for note in notes:
            events, _ = parse(sns(note))
            await store.record_events(events, now, file_cases=True,
                                      soft_window=cfg.soft_bounce_window,
                                      decide=lambda e, n, own: decide(e, n, cfg,
                                                                      self_service=own))
        assert await store.suppressed_count() == 0
        tickets, total = await store.list_tickets()
        assert total == 0, tickets
        # Both sends count in the guard's total (issue 24: it counts every send); their
        # bounce and complaint do not count against notice mail.
        assert await store.guard_counts(datetime(2000, 1, 1, tzinfo=UTC)) == (2, 0, 0)
        assert (await store.self_mail_counts(datetime(2000, 1, 1, tzinfo=UTC)))[1] == 2
        # That mailbox gets no more of it (and its +tag changes nothing).
        mid, why = await store.queue_self_mail("confirm", 1, "gone+x@bogus.example.net",
                                               now, limits, now)
        assert mid is None and why == "bounced_before"
    finally:
        await store.close()


async def test_one_mailbox_gets_three_mails_however_it_is_spelt(tmp_path: Path) -> None:
    """N2: `victim+1@`, `victim+2@`, dots at Gmail, case: one inbox, one limit."""
    async with site(tmp_path) as s:
        for spelling in ("victim+1@gmail.com", "Victim+2@GMAIL.com", "v.i.c.t.i.m@gmail.com",
                         "victim@googlemail.com", "vic.tim+zz@gmail.com", "victim@gmail.com"):
            r = await sign_up(s, spelling)
            assert r.status == 303  # the page says the same whatever happens
        await s.mail_settled()
        own = (await admin_get(s, "/self-mails"))["items"]
        assert len(own) == 3
        mails = [p for p in s.outbox.glob("*.eml")]
        assert len(mails) == 3
        refused = s.rt.metrics.web_mails.labels("confirm", "rate_limited")._value.get()
        assert refused == 3


async def test_self_service_mail_has_a_global_hourly_cap(tmp_path: Path) -> None:
    async with site(tmp_path, web={"mails_per_hour": 4}) as s:
        for i in range(7):
            assert (await sign_up(s, f"a{i}@isp{i}.example.jp")).status == 303
        await s.mail_settled()
        assert len(list(s.outbox.glob("*.eml"))) == 4
        assert s.rt.metrics.web_mails.labels("confirm", "global_limit")._value.get() == 3


async def _post_from(s: Site, client: str) -> int:
    """A sign-up as the ALB forwards it for `client` (127.0.0.1 is the trusted proxy)."""
    _, csrf = await s.form("/s/")
    async with s.http.post(s.public + "/s/", allow_redirects=False,
                           headers={"X-Forwarded-For": f"198.51.100.9, {client}"},
                           data={"csrf": csrf, "email": f"x{client.replace(':', '')}@e.jp",
                                 "carriers": "east", "kinds": "failure",
                                 "windows": "day"}) as r:
        return r.status


async def test_ipv6_clients_are_limited_per_64_and_ipv4_per_address(tmp_path: Path) -> None:
    """N2: sixty sign-ups from one /64 were all accepted; now the /64 is one client."""
    async with site(tmp_path, web={"trusted_proxies": ["127.0.0.1/32"],
                                   "posts_per_client_hour": 5}) as s:
        assert [await _post_from(s, f"2001:db8:1:2::{i:x}") for i in range(7)] == \
            [303] * 5 + [429] * 2
        assert await _post_from(s, "2001:db8:1:3::1") == 303  # the next /64: someone else
        assert [await _post_from(s, f"192.0.2.{i}") for i in (1, 1, 1, 1, 1, 1, 2)] == \
            [303] * 5 + [429, 303]


async def test_the_confirmation_mail_quotes_nothing_a_stranger_typed(tmp_path: Path) -> None:
    """N3: name and organisation of an unconfirmed sign-up are in neither the body nor
    the To: header: no phishing text from the operator's own domain."""
    lure = "至急：https://evil.example/verify で本人確認をしてください"
    org = "【重要】NTT東日本 お客様の回線は停止予定です"
    async with site(tmp_path) as s:
        assert (await sign_up(s, "target@isp.example.jp", name=lure,
                              organization=org)).status == 303
        await s.mail_settled()
        mail = mail_to(s, "target@isp.example.jp")
        body = body_of(mail)
        for typed in ("evil.example", "本人確認", "停止予定", "様"):
            assert typed not in body and typed not in str(mail["To"])
        assert str(mail["To"]) == "target@isp.example.jp"
        assert "/s/confirm?t=" in body


async def _confirm_page(s: Site, url: str) -> tuple[int, str]:
    async with s.http.get(url) as r:
        return r.status, await r.text()


async def test_the_latest_sign_up_decides_and_the_confirm_page_shows_it(
        tmp_path: Path, backend_url: str | None) -> None:
    """N4: a stranger's pending sign-up fixed the owner's settings; the owner's own
    sign-up now replaces them, the stranger's link confirms nothing, and the confirm
    page shows exactly what will be subscribed."""
    later = [timedelta(0)]  # the owner comes a minute after the stranger
    async with site(tmp_path, clock=lambda: utcnow() + later[0],
                    **on_backend(backend_url)) as s:
        email = "preseed@isp.example.jp"
        assert (await sign_up(s, email, name="ATTACKER-CHOSEN", carriers="west",
                              kinds="construction", prefectures="47")).status == 303
        await s.mail_settled()
        stranger_link = link_in(mail_to(s, email), "/s/confirm")
        for path in s.outbox.glob("*.eml"):
            path.unlink()
        later[0] = timedelta(minutes=1)
        assert (await sign_up(s, email, name="運用 太郎", carriers=["east", "west"],
                              prefectures=["13", "14"])).status == 303
        await s.mail_settled()
        owner_link = link_in(mail_to(s, email), "/s/confirm")
        status, _ = await _confirm_page(s, stranger_link)
        assert status == 400
        status, text = await _confirm_page(s, owner_link)
        assert status == 200
        for shown in ("運用 太郎", "NTT東日本", "NTT西日本", "東京都", "神奈川県", "故障"):
            assert shown in text, shown
        assert "ATTACKER-CHOSEN" not in text and "沖縄県" not in text
        sub = await s.rt.store.subscriber_by_email(email)
        assert sub is not None and sub.name == "運用 太郎"
        assert sub.carriers == ("east", "west") and sub.prefectures == ("13", "14")
        changes = await s.rt.store.subscriber_changes(sub.id)
        assert changes[0].actor == "self-service" and "ATTACKER-CHOSEN" in changes[0].detail


async def test_an_old_confirmation_link_does_not_undo_an_unsubscribe(tmp_path: Path) -> None:
    """N12: sign up, confirm, leave by one-click; the old confirmation mail's link
    (a shared mailbox, a forwarded mail) must not make the address active again."""
    async with site(tmp_path) as s:
        sid = await confirmed(s, "leaver@isp.example.jp")
        old_link = link_in(mail_to(s, "leaver@isp.example.jp"), "/s/confirm")
        unsubscribe = s.d.daemon.public.links.unsubscribe(sid)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as client, client.post(
                unsubscribe, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200
        status, _ = await _confirm_page(s, old_link)
        assert status == 400
        _, csrf = await s.form("/s/")
        async with s.http.post(s.public + "/s/confirm", data={
                "t": old_link.split("t=", 1)[1], "csrf": csrf}) as r:
            assert r.status == 400
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED


async def test_concurrent_sign_ups_for_one_address_all_answer_303(
        tmp_path: Path, backend_url: str | None) -> None:
    """N8: on PostgreSQL, simultaneous sign-ups for one address met the unique index and
    answered 500; the second finds the first's row, as on SQLite."""
    async with site(tmp_path, **on_backend(backend_url)) as s:
        for n in range(2):
            statuses = await asyncio.gather(*(sign_up(s, f"race{n}@isp.example.jp")
                                              for _ in range(12)))
            assert [r.status for r in statuses] == [303] * 12
        _, total = await s.rt.store.list_subscribers(query="race")
        assert total == 2


async def _hold(host: str, port: int, n: int, local: str
                ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`n` keep-alive connections from `local`, each having asked for one page (the
    probe's attacker: a complete request more often than header_timeout)."""
    held = []
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0))
            writer.write(b"GET /static/jpixd.css HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            continue  # refused: over its share
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        held.append((reader, writer))
    return held


async def test_one_client_cannot_hold_every_slot_of_the_public_listener(
        tmp_path: Path) -> None:
    """N6: one client holding 70 keep-alive connections reset 6 of 6 visitors. Here one
    address tries 40 (it keeps its share, 8), three more addresses fill every other slot
    with idle keep-alives, and a visitor's ten requests, each on a new connection, are
    all served: the longest-idle connection makes room for each."""
    async with site(tmp_path, http={"listen": "127.0.0.1:0", "max_connections": 20,
                                    "admin_token_file": str(tmp_path / "admin-token"),
                                    "max_connections_per_client": 8}) as s:
        host, port = s.public.removeprefix("http://").rsplit(":", 1)
        mine = await _hold(host, int(port), 40, "127.0.0.1")
        assert len(mine) == 8
        others = [c for local in ("127.0.0.3", "127.0.0.4", "127.0.0.5")
                  for c in await _hold(host, int(port), 8, local)]
        assert len(others) >= 12  # the listener is full (20) and has evicted some
        served = []
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as visitor:
            for _ in range(10):
                async with visitor.get(s.public + "/notices") as r:
                    served.append(r.status)
        assert served == [200] * 10
        shed = s.rt.metrics.http_shed
        assert shed.labels("public", "client_limit")._value.get() == 32
        assert shed.labels("public", "idle_evicted")._value.get() >= 10
        for _, writer in mine + others:
            writer.close()


async def test_feeds_are_built_once_per_change_cached_and_bounded(tmp_path: Path) -> None:
    """N7: 250 wordy notices made /notices.ics 4.2 MB and 0.8 s of event-loop time per
    request, every request. Eight readers at once now share one build; a reader that
    has the feed gets 304; a change makes a new one; each entry's text is bounded."""
    wordy = [{"id": f"W{i}", "kind": "construction", "title": f"工事 {i}",
              "body": "回線工事のお知らせ、" * 2000, "prefectures": ["13"],
              "starts_at": "2026-12-20T02:00:00+09:00", "ends_at": "2026-12-20T06:00:00+09:00"}
             for i in range(250)]
    source = {"name": "local", "kind": "json", "carrier": "east", "interval": "1h",
              "url": (tmp_path / "feed.json").as_uri(), "max_body_bytes": 32_000_000}
    async with site(tmp_path, sources=[source]) as s:
        write_feed(tmp_path, wordy)
        await s.poll()
        feeds = s.d.daemon.public.feeds  # type: ignore[union-attr]
        feeds.recheck = 0.0  # a change shows within a second; here at the next request
        for path, kind in (("/notices.ics", "text/calendar"),
                           ("/notices.atom", "application/atom+xml")):
            before = feeds.builds
            answers = await asyncio.gather(*(s.http.get(s.public + path) for _ in range(8)))
            bodies = [await r.read() for r in answers]
            assert {r.status for r in answers} == {200}
            assert feeds.builds == before + 1  # one build for the eight
            assert len({r.headers["ETag"] for r in answers}) == 1
            assert answers[0].headers["Content-Type"].startswith(kind)
            assert "max-age=" in answers[0].headers["Cache-Control"]
            assert len(bodies[0]) < 1_500_000, len(bodies[0])  # was 4.2 MB
            async with s.http.get(s.public + path, headers={
                    "If-None-Match": answers[0].headers["ETag"]}) as again:
                assert again.status == 304 and await again.read() == b""
        etag = answers[0].headers["ETag"]
        write_feed(tmp_path, [*wordy[:249], {**wordy[249], "title": "工事 249（変更）"}])
        await s.poll()
        async with s.http.get(s.public + "/notices.atom",
                              headers={"If-None-Match": etag}) as changed:
            assert changed.status == 200 and changed.headers["ETag"] != etag
            assert "工事 249（変更）" in await changed.text()


def test_a_rebuilt_feed_renders_only_the_notices_that_changed() -> None:
    from dataclasses import replace

    from jpixd.model import Notice, NoticeKind, NoticeStatus, StoredNotice
    from jpixd.web import syndication
    from jpixd.web.feedcache import FeedCache

    now = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    board = [StoredNotice(id=i, notice=Notice(
        source="w", external_id=str(i), carrier="east", kind=NoticeKind.CONSTRUCTION,
        status=NoticeStatus.SCHEDULED, title=f"工事 {i}", prefectures=("13",),
        starts_at=now + timedelta(days=3)), revision=f"r{i}", first_seen=now,
        last_changed=now, last_seen=now) for i in range(50)]
    cache, made = FeedCache(), []

    def counting(key: Any, make: Any) -> str:
        def recorded() -> str:
            made.append(key)
            return str(make())

        return cache.part(key, recorded)

    first = syndication.ics(board, base_url="https://n.example.jp", name="n", now=now,
                            memo=counting)
    assert len(made) == 50
    board[7] = replace(board[7], revision="r7b", last_changed=now + timedelta(minutes=1),
                       notice=replace(board[7].notice, title="工事 7（延期）"))
    second = syndication.ics(board, base_url="https://n.example.jp", name="n", now=now,
                             memo=counting)
    assert len(made) == 51 and made[-1][2] == 7
    assert "工事 7（延期）" in second.decode() and "工事 7（延期）" not in first.decode()
    assert second.replace("工事 7（延期）".encode(), "工事 7".encode()).count(b"VEVENT") == \
        first.count(b"VEVENT")


async def test_the_console_says_when_self_service_mail_is_held(tmp_path: Path) -> None:
    """Past `mail_bounce_limit`, confirmations stop (notice mail goes on): the operator
    sees it on the console's status page and in the admin status."""
    from jpixd.bounces.parse import parse
    from jpixd.bounces.rules import decide
    from jpixd.config import BouncesConfig
    from jpixd.selfmail import Limits
    from tests.test_console import login

    cfg = BouncesConfig()
    async with site(tmp_path, web={"mail_bounce_limit": 1}) as s:
        store, now = s.rt.store, s.rt.clock()
        mid, _ = await store.queue_self_mail("confirm", 1, "gone@bogus.example.net", now,
                                             Limits(3, 100, 1), now)
        assert mid is not None
        await store.mark_sent(mid, now, transport="ses", message_id="<m>",
                              ses_message_id="ses-held")
        events, _ = parse(sns(bounce(["gone@bogus.example.net"], feedback="fb-held",
                                     message_id="ses-held", timestamp=now.isoformat())))
        await store.record_events(events, now, soft_window=cfg.soft_bounce_window,
                                  decide=lambda e, n, own: decide(e, n, cfg,
                                                                  self_service=own))
        assert (await sign_up(s, "next@isp.example.jp")).status == 303  # same answer
        await s.mail_settled()
        assert s.mails_to("next@isp.example.jp") == []
        assert (await admin_get(s, "/status"))["self_service"]["held"] is True
        op = await login(s)
        async with op, op.get(s.d.base_url + "/console/") as r:
            text = await r.text()
        assert '<div class="value" id="self-service"><span class="badge bad">停止中</span>' \
            in text
