"""The public pages (issue 14) through HTTP as a browser and a mail client use them: the
self-service story, what strangers can and cannot learn or do, escaping, the feeds."""

from __future__ import annotations

import re
import time
import unicodedata
from datetime import timedelta
from pathlib import Path

import aiohttp
import feedparser
from prometheus_client import CollectorRegistry

from jpixd.config import Config, load_mapping
from jpixd.feeds.extract import extract
from jpixd.mail.sender import Sender
from jpixd.model import Subscriber, SubscriberStatus
from jpixd.web.links import Purpose, Signer
from tests.conftest import on_backend, running_daemon
from tests.webharness import (
    KEY,
    Site,
    body_of,
    link_in,
    site,
    web_config,
    web_mapping,
    write_feed,
)

ATTACK = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def sign_up(s: Site, email: str, **fields: str | list[str]) -> aiohttp.ClientResponse:
    _, csrf = await s.form("/s/")
    data: list[tuple[str, str]] = [("csrf", csrf), ("email", email), ("name", "運用 太郎"),
                                   ("organization", "例ISP"), ("carriers", "east"),
                                   ("kinds", "construction"), ("kinds", "failure"),
                                   ("windows", "day"), ("windows", "night"),
                                   ("windows", "late_night")]
    for key, value in fields.items():
        data = [(k, v) for k, v in data if k != key]
        data += [(key, v) for v in ([value] if isinstance(value, str) else value)]
    return await s.http.post(s.public + "/s/", data=data, allow_redirects=False)


async def confirmed(s: Site, email: str, **fields: str | list[str]) -> int:
    r = await sign_up(s, email, **fields)
    assert r.status == 303 and r.headers["Location"] == "/s/sent"
    await s.mail_settled()
    [mail] = s.mails_to(email)
    assert "登録の確認" in str(mail["Subject"])
    # Wrapped as the notices are: no line wider than 40 columns but the link's own.
    assert all(sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line) <= 40
               for line in body_of(mail).splitlines() if "://" not in line)
    url = link_in(mail, "/s/confirm")
    async with s.http.get(url) as page:
        text = await page.text()
        assert page.status == 200 and "登録を完了する" in text
    token = url.split("t=", 1)[1]
    csrf = re.search(r'name="csrf" value="([^"]+)"', text)
    assert csrf is not None
    async with s.http.post(s.public + "/s/confirm", data={"t": token, "csrf": csrf.group(1)}) \
            as done:
        assert done.status == 200 and "登録が完了しました" in await done.text()
    sub = await s.rt.store.subscriber_by_email(email)
    assert sub is not None and sub.status == SubscriberStatus.ACTIVE and sub.id is not None
    return sub.id


async def test_sign_up_confirm_manage_and_one_click(tmp_path: Path,
                                                    backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        sid = await confirmed(s, "noc@isp.example.jp", prefectures=["13", "14"])
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.prefectures == ("13", "14") and sub.name == "運用 太郎"
        # A failure in Kanagawa: mailed, with a manage link and RFC 8058 headers.
        write_feed(tmp_path, [{"id": "F1", "kind": "failure", "title": "神奈川県の一部で故障",
                               "prefectures": ["14"]}])
        await s.poll()
        await s.send_all()
        [notice] = [m for m in s.mails_to("noc@isp.example.jp") if m["X-Jpixd-Delivery"]]
        # RFC 8058 §3.1: the one-click POST is announced for HTTPS links only (this site
        # is http on loopback; tests/test_render.py has the https header).
        assert notice["List-Unsubscribe-Post"] is None
        unsubscribe = str(notice["List-Unsubscribe"]).strip("<>")
        assert unsubscribe.startswith(s.public + "/unsubscribe?t=u")
        manage = link_in(notice, "/s/manage")
        # The manage page: Kanagawa dropped.
        async with s.http.get(manage) as r:
            text = await r.text()
            assert r.status == 200 and 'value="14" data-region="r2" checked' in text
        csrf = re.search(r'name="csrf" value="([^"]+)"', text)
        assert csrf is not None
        form = [("t", manage.split("t=", 1)[1]), ("csrf", csrf.group(1)), ("action", "save"),
                ("name", "運用 太郎"), ("carriers", "east"), ("prefectures", "13"),
                ("kinds", "construction"), ("kinds", "failure"), ("windows", "day"),
                ("services", ""), ("charset", "")]
        async with s.http.post(s.public + "/s/manage", data=form) as r:
            assert r.status == 200 and "変更を保存しました" in await r.text()
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.prefectures == ("13",) and sub.windows == ("day",)
        changes = await s.rt.store.subscriber_changes(sid)
        assert [c.action for c in changes][:2] == ["updated", "confirmed"]
        assert changes[0].actor == "self-service" and "prefectures: 13,14 → 13" in \
            changes[0].detail
        # One-click, as a mail client does it: a POST without cookies or CSRF.
        async with aiohttp.ClientSession() as client, client.post(
                unsubscribe, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200 and "配信を停止しました" in await r.text()
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED
        async with s.http.get(s.d.base_url + f"/admin/v1/subscribers/{sid}/changes",
                              headers=s.admin) as r:
            log = (await r.json())["items"]
        assert [(c["actor"], c["action"]) for c in log] == [
            ("one-click", "unsubscribed"), ("self-service", "updated"),
            ("self-service", "confirmed"), ("self-service", "created")]


async def test_the_human_unsubscribe_page_changes_nothing_until_its_button(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        sid = await confirmed(s, "a@isp.example.jp")
        url = s.d.daemon.public.links.unsubscribe(sid)  # type: ignore[union-attr]
        async with s.http.get(url) as r:  # what a link scanner does
            assert r.status == 200 and "配信を停止する" in await r.text()
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.status == SubscriberStatus.ACTIVE
        async with s.http.post(url, data={}) as r:  # not the RFC 8058 body
            assert r.status == 400
        async with s.http.post(url, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED


async def test_one_click_as_rfc_8058_says_it_should_be_sent(tmp_path: Path) -> None:
    """RFC 8058 §3.1: the POST SHOULD be multipart/form-data (it MAY be urlencoded). It was
    refused with 400 and the subscriber stayed active (reader review §5): the body was read
    raw before the form was parsed."""
    async with site(tmp_path) as s:
        sid = await confirmed(s, "multi@isp.example.jp")
        url = s.d.daemon.public.links.unsubscribe(sid)  # type: ignore[union-attr]
        body = aiohttp.MultipartWriter("form-data")
        part = body.append("One-Click")
        part.set_content_disposition("form-data", name="List-Unsubscribe")
        async with aiohttp.ClientSession() as client, client.post(url, data=body) as r:
            assert r.status == 200 and "配信を停止しました" in await r.text()
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED
        # A broken multipart body is the client's mistake: 400, nothing changed.
        other = await confirmed(s, "broken@isp.example.jp")
        url = s.d.daemon.public.links.unsubscribe(other)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as client, client.post(
                url, data=b"--x\r\nnot a part", headers={
                    "Content-Type": "multipart/form-data; boundary=y"}) as r:
            assert r.status == 400
        sub = await s.rt.store.get_subscriber(other)
        assert sub is not None and sub.status == SubscriberStatus.ACTIVE


async def test_sign_up_and_link_requests_say_nothing_about_who_subscribes(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        await confirmed(s, "known@isp.example.jp")

        async def answer(email: str) -> tuple[int, str, str, float]:
            t0 = time.perf_counter()
            r = await sign_up(s, email)
            async with s.http.get(s.public + r.headers["Location"]) as page:
                body = await page.text()
            return r.status, r.headers["Location"], body, time.perf_counter() - t0

        known, new = await answer("known@isp.example.jp"), await answer("new@isp.example.jp")
        assert known[:3] == new[:3]  # same status, same place, same page
        assert abs(known[3] - new[3]) < 0.5
        # The known address got a manage link (not a second sign-up); its settings stand.
        await s.mail_settled()
        assert "配信条件の変更" in str(s.mails_to("known@isp.example.jp")[-1]["Subject"])

        async def ask(email: str) -> tuple[int, str, str]:
            _, csrf = await s.form("/s/link")
            r = await s.http.post(s.public + "/s/link", data={"csrf": csrf, "email": email},
                                  allow_redirects=False)
            async with s.http.get(s.public + r.headers["Location"]) as page:
                return r.status, r.headers["Location"], await page.text()

        assert await ask("known@isp.example.jp") == await ask("nobody@isp.example.jp")
        await s.mail_settled()
        assert s.mails_to("nobody@isp.example.jp") == []


async def test_forged_expired_and_borrowed_links_are_refused(tmp_path: Path,
                                                             backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        a = await confirmed(s, "a@isp.example.jp")
        b = await confirmed(s, "b@isp.example.jp")
        signer = Signer([KEY])
        now = s.rt.clock()
        good = signer.sign(a, Purpose.MANAGE, now + timedelta(days=1))
        leave = signer.sign(a, Purpose.UNSUBSCRIBE, None)
        other = Signer(["x" * 32])
        for_manage = {
            "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
            "expired": signer.sign(a, Purpose.MANAGE, now - timedelta(seconds=1)),
            "cross-purpose": leave,
            "cross-subscriber": good.replace(f"m{a}.", f"m{b}.", 1),
            "other key": other.sign(a, Purpose.MANAGE, now + timedelta(days=1)),
        }
        for_unsubscribe = {
            "tampered": leave[:-2] + ("AA" if not leave.endswith("AA") else "BB"),
            "cross-purpose": good,
            "cross-subscriber": leave.replace(f"u{a}.", f"u{b}.", 1),
            "other key": other.sign(a, Purpose.UNSUBSCRIBE, None),
        }
        for why, token in for_manage.items():
            async with s.http.get(s.public + "/s/manage", params={"t": token}) as r:
                assert r.status == 400, why
                assert "リンクが無効です" in await r.text(), why
        for why, token in for_unsubscribe.items():
            async with s.http.post(s.public + "/unsubscribe", params={"t": token},
                                   data={"List-Unsubscribe": "One-Click"}) as r:
                assert r.status == 400, why
        for sid in (a, b):
            sub = await s.rt.store.get_subscriber(sid)
            assert sub is not None and sub.status == SubscriberStatus.ACTIVE
        async with s.http.get(s.public + "/s/manage", params={"t": good}) as r:
            assert r.status == 200


async def test_forms_without_their_csrf_token_change_nothing(tmp_path: Path,
                                                             backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        await s.form("/s/")  # the browser has its cookie, the attacker's form no token
        r = await s.http.post(s.public + "/s/", data={"email": "x@isp.example.jp",
                                                      "carriers": "east"})
        assert r.status == 403
        r = await s.http.post(s.public + "/s/", data={"email": "x@isp.example.jp",
                                                      "carriers": "east", "csrf": "forged"})
        assert r.status == 403
        async with aiohttp.ClientSession() as fresh:  # no cookie, a token from elsewhere
            _, csrf = await s.form("/s/")
            r = await fresh.post(s.public + "/s/", data={"email": "x@isp.example.jp",
                                                         "carriers": "east", "csrf": csrf})
            assert r.status == 403
        assert await s.rt.store.subscriber_by_email("x@isp.example.jp") is None


async def test_posts_per_client_are_limited(tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url), web={"posts_per_client_hour": 3}) as s:
        statuses = [(await sign_up(s, f"u{i}@isp.example.jp")).status for i in range(5)]
        assert statuses == [303, 303, 303, 429, 429]


async def test_mail_per_address_is_limited(tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url), web={"mails_per_address_hour": 2}) as s:
        for _ in range(4):
            assert (await sign_up(s, "bomb@isp.example.jp")).status == 303
        await s.mail_settled()
        assert len(s.mails_to("bomb@isp.example.jp")) == 2


async def test_markup_in_titles_and_names_is_escaped_everywhere(tmp_path: Path,
                                                                backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        sid = await confirmed(s, "evil@isp.example.jp", name=ATTACK, organization=ATTACK)
        write_feed(tmp_path, [{"id": "W1", "kind": "construction",
                               "title": f"工事 {ATTACK}\r\nEND:VEVENT\r\nBEGIN:VEVENT",
                               "prefectures": ["13"], "starts_at": "2026-12-24T01:00:00+09:00",
                               "ends_at": "2026-12-24T05:00:00+09:00", "body": ATTACK}])
        await s.poll()
        [stored] = (await s.rt.store.list_notices())[0]
        manage = s.d.daemon.public.links.manage(sid, s.rt.clock())  # type: ignore[union-attr]
        pages = ["/notices", f"/notices/{stored.id}", "/notices.atom", manage]
        for path in pages:
            async with s.http.get(path if path.startswith("http") else s.public + path) as r:
                text = await r.text()
                assert r.status == 200, path
                assert "<script>" not in text and "<img src=x" not in text, path
                assert "alert" in text, path  # the text is there, as text
        # The calendar is plain text (RFC 5545), where markup is harmless but a line break
        # would start a property of its own: the title cannot add or end an event.
        async with s.http.get(s.public + "/notices.ics") as r:
            ics = await r.text()
            lines = ics.replace("\r\n ", "").split("\r\n")  # unfolded
            assert lines.count("BEGIN:VEVENT") == 1 and lines.count("END:VEVENT") == 1
            [summary] = [ln for ln in lines if ln.startswith("SUMMARY:")]
            assert summary.startswith("SUMMARY:【工事・予定】工事 <script>")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as op:
            async with op.post(s.d.base_url + "/console/login",
                               data={"token": "test-admin-token-0123456789"}) as r:
                assert r.status == 200
            for path in ["/console/subscribers", f"/console/subscribers/{sid}",
                         "/console/notices", f"/console/notices/{stored.id}"]:
                async with op.get(s.d.base_url + path) as r:
                    text = await r.text()
                    assert r.status == 200 and "<script>" not in text, path
                    assert "<img src=x" not in text, path


async def test_the_public_listener_serves_no_admin_or_console_route(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        for path in ["/admin/v1/status", "/admin/v1/openapi.json", "/console/",
                     "/console/login", "/metrics", "/readyz"]:
            async with s.http.get(s.public + path, headers=s.admin) as r:
                assert r.status == 404, path
        async with s.http.post(s.public + "/admin/v1/sending/pause", headers=s.admin) as r:
            assert r.status in (404, 405)
        async with s.http.get(s.public + "/s/") as r:
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer"
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_board_atom_and_calendar(tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        write_feed(tmp_path, [
            {"id": "W1", "kind": "construction", "title": "東京都の一部で設備工事",
             "prefectures": ["13"], "starts_at": "2026-12-24T01:00:00+09:00",
             "ends_at": "2026-12-24T05:00:00+09:00"},
            {"id": "F1", "kind": "failure", "title": "北海道の一部で故障", "prefectures": ["01"]},
        ])
        await s.poll()
        async with s.http.get(s.public + "/notices", params={"prefecture": "13"}) as r:
            text = await r.text()
            # A title breaks between its phrases in every browser (<wbr>, keep-all).
            assert '<a href="/notices/1">【工事・予定】<wbr>東京都の<wbr>' in text
            text = text.replace("<wbr>", "")  # as a reader sees it
            assert "東京都の一部で設備工事" in text and "北海道" not in text.split("<h2>")[2]
            # The same filter's calendar, to subscribe to in one click (reader review).
            webcal = s.public.replace("http://", "webcal://") + "/notices.ics?prefecture=13"
            assert f'href="{webcal}" id="webcal"' in text
        async with s.http.get(s.public + "/notices", params={"prefecture": "火星"}) as r:
            assert r.status == 400
        async with s.http.get(s.public + "/notices.atom", params={"kind": "failure"}) as r:
            feed = feedparser.parse(await r.read())
            assert r.headers["Content-Type"].startswith("application/atom+xml")
            assert [e.title for e in feed.entries] == ["【故障・発生中】北海道の一部で故障"]
        # What jpixd writes, jpixd reads back (`jpixd parse --kind atom` on its own feed):
        # kind, status, area and times survive the trip.
        async with s.http.get(s.public + "/notices.atom") as r:
            extracted = await extract("atom", await r.text(), url=s.public + "/notices.atom",
                                      now=s.rt.clock())
        by_title = {n["title"]: n for n in extracted.notices}
        works = by_title["東京都の一部で設備工事"]
        assert (works["kind"], works["status"], works["prefectures"]) == (
            "construction", "scheduled", ["13"])
        assert works["starts_at"] == "2026-12-24T01:00:00+09:00"
        assert works["ends_at"] == "2026-12-24T05:00:00+09:00"
        assert by_title["北海道の一部で故障"]["status"] == "occurred"
        async with s.http.get(s.public + "/notices.ics") as r:
            ics = await r.text()
            assert r.headers["Content-Type"].startswith("text/calendar")
            assert ics.count("BEGIN:VEVENT") == 1 and "DTSTART:20261223T160000Z" in ics
            assert "DTEND:20261223T200000Z" in ics and "北海道" not in ics
            assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))
        # A subscriber's own calendar, at a signed URL: Tokyo only for this one.
        sid = await confirmed(s, "cal@isp.example.jp", prefectures="01")
        url = s.d.daemon.public.links.calendar(sid)  # type: ignore[union-attr]
        async with s.http.get(url) as r:
            assert r.status == 200 and "BEGIN:VEVENT" not in await r.text()
        async with s.http.get(url[:-3] + "AAA") as r:
            assert r.status == 404


async def test_a_key_put_in_front_keeps_mailed_links_working(tmp_path: Path,
                                                             backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        sid = await confirmed(s, "rot@isp.example.jp")
        old_unsubscribe = s.d.daemon.public.links.unsubscribe(sid)  # type: ignore[union-attr]
        port = s.public.rsplit(":", 1)[1]
    async with site(tmp_path, **on_backend(backend_url), keys=("n" * 32, KEY), port=int(port)) as s:
        new = s.d.daemon.public.links.unsubscribe(sid)  # type: ignore[union-attr]
        assert new != old_unsubscribe  # the new key signs
        async with s.http.get(old_unsubscribe) as r:
            assert r.status == 200 and "配信を停止する" in await r.text()
    async with site(tmp_path, **on_backend(backend_url), keys=("n" * 32,), port=int(port)) as s:
        async with s.http.get(old_unsubscribe) as r:  # the old key removed: retired
            assert r.status == 400


async def test_confirmation_links_expire_and_pending_subscribers_get_nothing(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        r = await sign_up(s, "late@isp.example.jp")
        assert r.status == 303
        await s.mail_settled()
        sub = await s.rt.store.subscriber_by_email("late@isp.example.jp")
        assert sub is not None and sub.status == SubscriberStatus.PENDING
        write_feed(tmp_path, [{"id": "F9", "kind": "failure", "title": "東京都の一部で故障",
                               "prefectures": ["13"]}])
        report = await s.poll()
        assert report["changes"][0]["deliveries"] == 0  # nobody active yet
        [mail] = s.mails_to("late@isp.example.jp")  # the confirmation only
        assert mail["X-Jpixd-Delivery"] is None and "登録の確認" in str(mail["Subject"])
        expired = Signer([KEY]).sign(sub.id or 0, Purpose.CONFIRM, s.rt.clock().replace(
            year=2020))
        async with s.http.get(s.public + "/s/confirm", params={"t": expired}) as page:
            assert page.status == 400
            # It says what to do: sign up again (not "get a manage link", which a
            # subscriber not yet confirmed cannot use).
            text = await page.text()
            assert "確認用のリンクが無効です" in text and 'href="/s/">もう一度申し込む' in text


async def test_a_reload_takes_a_new_key_without_breaking_mailed_links(
        tmp_path: Path) -> None:
    cfg = web_config(tmp_path)
    port = int((cfg.web.base_url or "").rsplit(":", 1)[1])

    def rotated() -> Config:
        return load_mapping(web_mapping(tmp_path, keys=("n" * 32, KEY), port=port),
                            base_dir=tmp_path, env={})

    async with running_daemon(cfg, registry=CollectorRegistry(),
                              reload_from=rotated) as d, aiohttp.ClientSession() as http:
        public, rt = d.daemon.public, d.daemon.runtime
        assert public is not None and rt is not None
        sub = await rt.store.create_subscriber(Subscriber(email="r@isp.example.jp"),
                                               rt.clock())
        assert sub.id is not None
        mailed = public.links.unsubscribe(sub.id)
        await d.daemon._reload()
        fresh = public.links.unsubscribe(sub.id)
        assert fresh != mailed  # the new key signs now
        sender = rt.loops["sender"]
        assert isinstance(sender, Sender) and sender.renderer.links is public.links
        for url in (mailed, fresh):
            async with http.get(url) as r:
                assert r.status == 200, url


async def test_a_visitor_reads_errors_in_japanese(tmp_path: Path) -> None:
    """Reader review: a missing page was aiohttp's bare English 「404: Not Found」."""
    async with site(tmp_path) as s:
        for path in ("/nothing-here", "/admin/v1/status", "/notices/x/y"):
            async with s.http.get(s.public + path) as r:
                text = await r.text()
                assert r.status == 404 and r.content_type == "text/html", path
                assert "ページが見つかりません" in text and 'lang="ja"' in text, path
        async with s.http.delete(s.public + "/notices") as r:
            assert r.status == 405 and "この操作はできません" in await r.text()


async def test_sign_up_errors_are_japanese_listed_at_the_top_and_marked(
        tmp_path: Path) -> None:
    """Reader review: 「must name at least one of east, west」 on the sign-up page, not
    listed at the top, fields not marked."""
    async with site(tmp_path) as s:
        r = await sign_up(s, "noc@isp.example.jp", carriers=[], windows=[],
                          name="名" * 201)
        assert r.status == 400
        text = await r.text()
        top = text.split('id="errors"')[1].split("</div>")[0]
        for message, field in (("通信事業者を1つ以上選んでください", "carriers"),
                               ("配信する時間帯を1つ以上選んでください", "windows"),
                               ("お名前は200文字までで入力してください", "name")):
            assert f'<a href="#err-{field}">{message}</a>' in top, message
            assert f'id="err-{field}">{message}</div>' in text, field
        assert 'aria-invalid="true" aria-describedby="err-name"' in text
        assert "must" not in text and "one of" not in text
        assert await s.rt.store.subscriber_by_email("noc@isp.example.jp") is None


async def test_the_board_can_be_cached_for_a_few_seconds(tmp_path: Path) -> None:
    """Reader review: the board was `no-store`, so an outage's refresh storm could not be
    cached. It is the same for every visitor: a shared cache may keep it 15 s, a browser
    revalidates (an ETag: 304) and so never shows a board older than the click."""
    async with site(tmp_path) as s:
        await s.poll()  # the source read: nothing changes between the two visits
        async with s.http.get(s.public + "/notices") as r:
            assert r.headers["Cache-Control"] == "public, max-age=0, s-maxage=15"
            etag = r.headers["ETag"]
        async with s.http.get(s.public + "/notices", headers={"If-None-Match": etag}) as r:
            assert r.status == 304 and not await r.read()
        async with s.http.get(s.public + "/s/") as r:  # a form with its own CSRF token
            assert r.headers["Cache-Control"] == "no-store"


async def test_services_are_chosen_from_ntt_s_names_and_find_its_wording(
        tmp_path: Path) -> None:
    """Reader review: サービス was free text, and subscribers do not know NTT's names. The
    optical choice finds NTT East's 「光アクセスサービス（フレッツ光等）」 and NTT West's
    「フレッツ光ネクスト」 alike; typed names stay possible."""
    async with site(tmp_path) as s:
        async with s.http.get(s.public + "/s/") as r:
            form = await r.text()
        assert 'name="service_choices" value="optical"' in form
        assert "ひかり電話</label>" in form and 'for="services">その他のサービス' in form
        sid = await confirmed(s, "optical@isp.example.jp",
                              service_choices=["optical", "vpn"], services="光電話オフィスA")
        sub = await s.rt.store.get_subscriber(sid)
        assert sub is not None and sub.services == (
            "フレッツ光", "光アクセス", "フレッツ・VPN", "光電話オフィスA")
        write_feed(tmp_path, [
            {"id": "F1", "kind": "failure", "title": "東日本の故障", "prefectures": ["13"],
             "services": ["光アクセスサービス（フレッツ光等）"]},
            {"id": "F2", "kind": "failure", "title": "西日本の故障", "prefectures": ["13"],
             "services": ["フレッツ光ネクスト"]},
            {"id": "F3", "kind": "failure", "title": "電話だけの故障", "prefectures": ["13"],
             "services": ["ひかり電話"]},
            {"id": "F4", "kind": "failure", "title": "VPNの故障", "prefectures": ["13"],
             "services": ["フレッツ・ＶＰＮ ワイド"]}])
        await s.poll()
        await s.send_all()
        subjects = sorted(str(m["Subject"]) for m in s.mails_to("optical@isp.example.jp")
                          if m["X-Jpixd-Delivery"])
        assert [t.split("】")[-1] for t in subjects] == sorted(
            ["東日本の故障", "西日本の故障", "VPNの故障"])
        # The manage page shows the choices ticked and the typed one as typed.
        [mail] = [m for m in s.mails_to("optical@isp.example.jp") if m["X-Jpixd-Delivery"]][:1]
        async with s.http.get(link_in(mail, "/s/manage")) as r:
            page = await r.text()
        assert 'value="optical" checked' in page and 'value="vpn" checked' in page
        assert 'value="hikari-denwa" checked' not in page
        assert 'name="services" value="光電話オフィスA"' in page


def test_titles_break_between_phrases_and_stay_escaped() -> None:
    """A title is cut into BudouX's phrases with a <wbr> between them (every browser
    then breaks it there, with keep-all), its markup escaped; a long text is only
    escaped (prose may break anywhere, and phrasing 20,000 characters per view is slow)."""
    from jpixd.web.pages import PHRASED_MAX, phrased

    assert str(phrased("大阪府の一部地域における工事")) == \
        "大阪府の<wbr>一部<wbr>地域に<wbr>おける<wbr>工事"
    said = str(phrased('工事 <script>alert("x")</script>'))
    assert "<script>" not in said and "&lt;script&gt;" in said
    long = "回線工事のお知らせ、" * (PHRASED_MAX // 10 + 1)
    assert str(phrased(long)) == long and "<wbr>" not in str(phrased(long))
