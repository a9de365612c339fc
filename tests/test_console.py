"""The operator console (issue 14): login, CSRF on every action, what it shows and does."""

from __future__ import annotations

import html
import re
from pathlib import Path

import aiohttp

from jpixd.model import DeliveryState, Subscriber, SubscriberStatus
from tests.conftest import ADMIN_TOKEN, on_backend
from tests.sesnotes import record_bounce
from tests.webharness import CSRF, Site, site, write_feed


async def login(s: Site, token: str = ADMIN_TOKEN) -> aiohttp.ClientSession:
    op = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with op.post(s.d.base_url + "/console/login", data={"token": token}) as r:
        assert r.status == 200, await r.text()
    return op


async def csrf_of(op: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    async with op.get(url) as r:
        text = await r.text()
        assert r.status == 200, url
    m = CSRF.search(text)
    assert m is not None
    return text, m.group(1)


async def test_login_is_required_and_a_wrong_token_refused(tmp_path: Path,
                                                           backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        async with s.http.get(s.d.base_url + "/console/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/console/login"
        async with s.http.post(s.d.base_url + "/console/login",
                               data={"token": "wrong-token-0123456789"}) as r:
            assert r.status == 401 and "正しくありません" in await r.text()
        async with s.http.get(s.d.base_url + "/console/deliveries",
                              allow_redirects=False) as r:
            assert r.status == 303
        async with s.http.get(s.d.base_url + "/console/",
                              headers={"Cookie": "jpixd_console=99999999999.forged"},
                              allow_redirects=False) as r:
            assert r.status == 303
        op = await login(s)
        async with op:
            async with op.get(s.d.base_url + "/console/") as r:
                assert r.status == 200 and "送信中" in await r.text()
            cookie = next(c for c in op.cookie_jar if c.key == "jpixd_console")
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert cookie["path"] == "/console"


async def test_pause_and_resume_need_the_csrf_token(tmp_path: Path,
                                                    backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        op = await login(s)
        async with op:
            _, csrf = await csrf_of(op, s.d.base_url + "/console/")
            async with op.post(s.d.base_url + "/console/sending",
                               data={"action": "pause"}) as r:
                assert r.status == 403
            assert not (await s.rt.store.sending_state()).paused
            # The first click asks again, and stops nothing.
            async with op.post(s.d.base_url + "/console/sending",
                               data={"action": "pause", "reason": "メンテナンス",
                                     "csrf": csrf}) as r:
                text = await r.text()
                assert r.status == 200 and "送信を停止しますか" in text
                assert 'id="confirm-pause"' in text and 'value="メンテナンス"' in text
            assert not (await s.rt.store.sending_state()).paused
            async with op.post(s.d.base_url + "/console/sending",
                               data={"action": "pause", "reason": "メンテナンス",
                                     "confirm": "yes", "csrf": csrf}) as r:
                text = await r.text()
                assert r.status == 200 and 'id="sending-state">停止中' in text
                assert "メンテナンス" in text
            state = await s.rt.store.sending_state()
            assert state.paused and state.actor == "console"
            _, csrf = await csrf_of(op, s.d.base_url + "/console/")
            async with op.post(s.d.base_url + "/console/sending",
                               data={"action": "resume", "csrf": csrf}) as r:
                assert 'id="sending-state">送信中' in await r.text()
            assert not (await s.rt.store.sending_state()).paused


async def test_status_shows_the_figures_an_operator_watches(tmp_path: Path,
                                                            backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        await s.rt.store.create_subscriber(Subscriber(email="a@isp.example.jp"), s.rt.clock())
        write_feed(tmp_path, [{"id": "F1", "kind": "failure", "title": "東京都の一部で故障",
                               "prefectures": ["13"]}])
        await s.poll()
        await s.send_all()
        op = await login(s)
        async with op, op.get(s.d.base_url + "/console/") as r:
            text = await r.text()
        assert 'id="oldest">0 秒' in text
        assert "バウンス率（停止 " in text and "苦情率（停止 " in text
        assert "housekeeping" in text and "sender" in text and "feeds" in text
        assert "local" in text  # the source with its last result
        assert '<svg class="chart"' in text and "送信 1、バウンス 0、苦情 0" in text
        cluster = s.rt.cluster
        if cluster is not None:  # PostgreSQL: this host, and what it leads
            assert f"このホスト: <strong>{cluster.host}</strong>" in text
            assert "archive, backlog, feeds, guard, housekeeping" in text
            assert "1 台で分担" in text
        else:
            assert "ホスト</h2>" not in text


async def test_a_failed_confirmation_is_one_of_the_deliveries_and_can_be_sent_again(
        tmp_path: Path) -> None:
    """Self-service mail is in the one outbox (issue 24): a failed confirmation is listed
    with the failed deliveries, as what it is, and the console sends it again."""
    from jpixd.selfmail import Limits

    async with site(tmp_path) as s:
        now = s.rt.clock()
        sub = await s.rt.store.create_subscriber(Subscriber(email="new@isp.example.jp"), now)
        assert sub.id is not None
        await s.rt.store.set_sending(paused=True, reason="test", actor="test", now=now)
        mid, _ = await s.rt.store.queue_self_mail("confirm", sub.id, sub.email, now,
                                                  Limits(3, 100, 10), now)
        assert mid is not None
        await s.rt.store.mark_final(mid, now, DeliveryState.FAILED, "421 test")
        await s.rt.store.set_sending(paused=False, reason=None, actor="test", now=now)
        op = await login(s)
        async with op:
            text, csrf = await csrf_of(op, s.d.base_url + "/console/deliveries?state=failed")
            row = text[text.index(f"<tr><td>{mid}</td>"):]
            row = row[:row.index("</tr>")]
            assert "登録確認" in row and "421 test" in row and "/console/notices/" not in row
            async with op.post(s.d.base_url + f"/console/deliveries/{mid}/retry",
                               data={"csrf": csrf}) as r:
                assert r.status == 200
            await s.mail_settled()
        [mail] = s.mails_to("new@isp.example.jp")
        assert "/s/confirm?" in mail.get_content()
        again = await s.rt.store.get_delivery(mid)
        assert again is not None and again.state == DeliveryState.SENT


async def test_failed_mail_is_retried_and_a_suppression_lifted(tmp_path: Path,
                                                               backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        sub = await s.rt.store.create_subscriber(Subscriber(email="a@isp.example.jp"),
                                                 s.rt.clock())
        write_feed(tmp_path, [{"id": "F1", "kind": "failure", "title": "故障",
                               "prefectures": ["13"]}])
        # Paused while the mail is made to fail, so that the running sender cannot
        # send it first.
        await s.rt.store.set_sending(paused=True, reason="test", actor="test",
                                     now=s.rt.clock())
        await s.poll()
        [d], _ = await s.rt.store.list_deliveries()
        await s.rt.store.mark_final(d.id, s.rt.clock(), DeliveryState.FAILED, "550 test")
        await s.rt.store.set_sending(paused=False, reason=None, actor="test",
                                     now=s.rt.clock())
        op = await login(s)
        async with op:
            text, csrf = await csrf_of(op, s.d.base_url + "/console/deliveries?state=failed")
            assert "550 test" in text
            async with op.post(s.d.base_url + f"/console/deliveries/{d.id}/retry",
                               data={"csrf": csrf, "back": "https://evil.example/"}) as r:
                assert r.status == 200 and str(r.url).endswith("/console/deliveries")
            await s.send_all()
            again = await s.rt.store.get_delivery(d.id)
            assert again is not None and again.state == DeliveryState.SENT  # was failed
            # Sent mail is not sent again: said, not a silent redirect.
            async with op.post(s.d.base_url + f"/console/deliveries/{d.id}/retry",
                               data={"csrf": csrf}) as r:
                assert r.status == 409 and f"delivery {d.id} is sent" in await r.text()
            # A suppression, lifted from the console.
            await record_bounce(s.rt.store, "a@isp.example.jp", s.rt.clock())
            assert await s.rt.store.is_suppressed("a@isp.example.jp")
            text, csrf = await csrf_of(op, s.d.base_url + "/console/bounces")
            assert "a@isp.example.jp" in text
            async with op.post(s.d.base_url + "/console/suppressions/lift",
                               data={"csrf": csrf, "email": "a@isp.example.jp"}) as r:
                assert r.status == 200
            assert not await s.rt.store.is_suppressed("a@isp.example.jp")
            assert sub.id is not None
            # Both changes to the subscriber are on its record, with who made them.
            changes = await s.rt.store.subscriber_changes(sub.id)
            assert [(c.actor, c.action) for c in changes[:2]] == [
                ("console", "updated"), ("bounces", "suppressed")]
            assert "Permanent" in changes[1].detail


async def test_subscribers_are_edited_and_imported_with_the_same_rules(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        left = await s.rt.store.create_subscriber(
            Subscriber(email="left@isp.example.jp", status=SubscriberStatus.UNSUBSCRIBED),
            s.rt.clock())
        op = await login(s)
        async with op:
            text, csrf = await csrf_of(op, s.d.base_url + "/console/subscribers")

            def upload(csv: str) -> aiohttp.FormData:
                form = aiohttp.FormData()
                form.add_field("csrf", csrf)
                form.add_field("file", csv.encode(), filename="s.csv", content_type="text/csv")
                return form

            bad = "email,name\nnot-an-address,x\nok@isp.example.jp,y\n"
            async with op.post(s.d.base_url + "/console/subscribers/import",
                               data=upload(bad)) as r:
                text = await r.text()
                # Each problem in Japanese, with its line and column (reader review).
                assert r.status == 400
                assert "2 行目の「email」列: メールアドレスの形式が正しくありません" in text
            assert await s.rt.store.subscriber_by_email("ok@isp.example.jp") is None
            good = "email,name\nok@isp.example.jp,山田\nleft@isp.example.jp,戻らない\n"
            # A dry run lists what would change, in words, not as errors; changes nothing.
            dry = upload(good)
            dry.add_field("dry_run", "1")
            async with op.post(s.d.base_url + "/console/subscribers/import", data=dry) as r:
                text = await r.text()
                assert r.status == 200 and 'id="errors"' not in text
                assert "ok@isp.example.jp: 新規登録" in text
                assert "left@isp.example.jp: お名前: （なし） → 戻らない" in text
            assert await s.rt.store.subscriber_by_email("ok@isp.example.jp") is None
            async with op.post(s.d.base_url + "/console/subscribers/import",
                               data=upload(good)) as r:
                text = await r.text()
                assert r.status == 200 and "新規 1 件、更新 1 件" in text
            still = await s.rt.store.get_subscriber(left.id or 0)
            assert still is not None and still.status == SubscriberStatus.UNSUBSCRIBED
            # Edit one: a prefecture and a pause, logged as the console's.
            ok = await s.rt.store.subscriber_by_email("ok@isp.example.jp")
            assert ok is not None and ok.id is not None
            text, csrf = await csrf_of(op, s.d.base_url + f"/console/subscribers/{ok.id}")
            data = [("csrf", csrf), ("name", "山田"), ("carriers", "east"),
                    ("prefectures", "13"), ("kinds", "failure"), ("windows", "day"),
                    ("status", "active"), ("paused", "1"), ("services", ""), ("charset", "")]
            async with op.post(s.d.base_url + f"/console/subscribers/{ok.id}",
                               data=data) as r:
                text = await r.text()
                assert r.status == 200 and "保存しました" in text
            ok = await s.rt.store.get_subscriber(ok.id)
            assert ok is not None and ok.paused and ok.prefectures == ("13",)
            # A mistake is said in Japanese, listed at the top and marked on its field.
            wrong = [(k, v) for k, v in data if k not in ("carriers", "csrf")]
            text, csrf = await csrf_of(op, s.d.base_url + f"/console/subscribers/{ok.id}")
            async with op.post(s.d.base_url + f"/console/subscribers/{ok.id}",
                               data=[("csrf", csrf), *wrong]) as r:
                text = await r.text()
            top = text.split('id="errors"')[1].split("</div>")[0]
            assert '<a href="#err-carriers">通信事業者を1つ以上選んでください</a>' in top
            assert (await s.rt.store.get_subscriber(ok.id or 0)) == ok  # nothing changed
            changes = await s.rt.store.subscriber_changes(ok.id)
            assert changes[0].actor == "console" and re.search(r"prefectures: .* → 13",
                                                               changes[0].detail)
            # The console reads it in words, names for codes (reader review).
            async with op.get(s.d.base_url + f"/console/subscribers/{ok.id}") as r:
                page = await r.text()
            assert re.search(r"<td>管理画面</td><td>変更</td><td>[^<]*対象地域: すべて → 東京都",
                             page), page
            async with op.get(s.d.base_url + "/console/subscribers",
                              params={"q": "山田"}) as r:
                text = await r.text()
                assert "ok@isp.example.jp" in text and "left@isp.example.jp" not in text


async def test_shadow_mode_is_said_on_the_status_page_and_in_the_api(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        op = await login(s)
        async with op:
            async with op.get(s.d.base_url + "/console/") as r:
                assert 'id="shadow-mode"' not in await r.text()
            await s.rt.store.enter_shadow(s.rt.clock())
            async with op.get(s.d.base_url + "/console/") as r:
                assert 'id="shadow-mode"' in await r.text()
        async with s.http.get(s.d.base_url + "/admin/v1/status", headers=s.admin) as r:
            status = await r.json()
        assert status["mode"]["shadow"] is True and status["archive"] is None


async def test_a_second_host_says_who_runs_its_waiting_loops(tmp_path: Path,
                                                             postgres_db: str) -> None:
    """Two hosts on one PostgreSQL: the second's status page lists both, says that its
    feed poller waits and which host polls instead."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from tests.conftest import make_config, running_daemon

    first_dir = tmp_path / "first"
    first_dir.mkdir()
    async with running_daemon(make_config(first_dir, **on_backend(postgres_db)),
                              registry=CollectorRegistry()) as first:
        leader = first.daemon.cluster
        assert leader is not None

        async def leads_all() -> None:
            while not all(leader.leads(r) for r in ("feeds", "backlog", "housekeeping")):
                leader.beaten.clear()
                await leader.beaten.wait()

        await asyncio.wait_for(leads_all(), 10)
        async with site(tmp_path, **on_backend(postgres_db)) as s:
            second = s.rt.cluster
            assert second is not None

            async def sees_both() -> None:
                while len(second.hosts) < 2:
                    second.beaten.clear()
                    await second.beaten.wait()

            await asyncio.wait_for(sees_both(), 10)
            op = await login(s)
            async with op, op.get(s.d.base_url + "/console/") as r:
                text = await r.text()
    assert f"このホスト: <strong>{second.host}</strong>" in text
    assert f"<td>{leader.host}</td>" in text and f"<td>{second.host}</td>" in text
    assert f"待機（{leader.host} が担当）" in text  # the feed poller, here
    assert "2 台で分担" in text


def test_the_chart_draws_no_date_past_its_right_edge() -> None:
    """At 00:34 JST the last midnight is the chart's last hour: its tick is drawn, its
    date would be cut off by the edge (seen in a screenshot as a lone "1"), so it is not."""
    from datetime import UTC, datetime

    from jpixd.model import JST
    from jpixd.web import chart

    now = datetime(2026, 11, 29, 15, 34, tzinfo=UTC)  # 2026-11-30 00:34 JST
    svg = chart.svg({}, now, JST)
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="\d+" font-size="11" '
                                       r'fill="#5b6776">\d+/\d+</text>', svg)]
    assert len(xs) == 6 and all(x + chart.DATE_WIDTH <= chart.W for x in xs)
    assert "11/30</text>" not in svg and "11/29</text>" in svg
    assert svg.count('stroke="#e3e8ee"') == 7  # every midnight's tick, the last one too


def test_the_chart_s_legend_is_text_in_the_lines_colours() -> None:
    """Reader review: the legend sat on the plot's edge, 5 px tall on a phone. It is the
    page's own text now, each swatch the colour of its line (by class: the CSP allows no
    inline style), and the drawing scrolls in its own box."""
    from datetime import UTC, datetime

    from jpixd.model import JST
    from jpixd.web import chart
    from jpixd.web.pages import _static_body

    html_text = chart.svg({}, datetime(2026, 11, 29, 15, 34, tzinfo=UTC), JST)
    legend, drawing = html_text.split('<div class="chart-wrap">')
    assert "送信" in legend and "バウンス" in legend and "苦情" in legend
    assert "style=" not in html_text and "バウンス</text>" not in drawing
    css = _static_body("jpixd.css").decode()
    for name, colour, _ in chart.SERIES:
        assert f".chart-legend .series-{name} {{ background: {colour}; }}" in css
        assert f'stroke="{colour}"' in drawing


async def test_a_notice_page_has_its_times_text_history_and_the_mail_it_sends(
        tmp_path: Path) -> None:
    """Reader review: the console's notice page had no windows, body, public link or mail
    preview, and its history said `update`, not what changed."""
    work = {"id": "W1", "kind": "construction", "title": "大阪府の一部で設備工事",
            "prefectures": ["27"], "localities": ["大阪市中央区"],
            "body": "設備工事に伴い、最大5分程度の通信断が発生します。",
            "starts_at": "2026-12-24T01:00:00+09:00", "ends_at": "2026-12-24T05:00:00+09:00",
            "published": "2026-12-20T10:00:00+09:00"}
    async with site(tmp_path) as s:
        write_feed(tmp_path, [work])
        await s.poll()
        write_feed(tmp_path, [{**work, "starts_at": "2026-12-24T02:00:00+09:00",
                               "ends_at": "2026-12-24T06:00:00+09:00"}])
        await s.poll()
        [stored] = (await s.rt.store.list_notices(source="local"))[0]
        op = await login(s)
        async with op:
            async with op.get(f"{s.d.base_url}/console/notices") as r:
                listing = await r.text()
            async with op.get(f"{s.d.base_url}/console/notices/{stored.id}") as r:
                page = await r.text()
        assert '<td><span class="badge st-planned">予定</span></td>' in listing
        assert "2026年12月24日(木) 02:00 ～ 06:00" in page
        # Its state now, as the board shows it: the badge's word and colour.
        assert '<span class="badge st-planned" id="state-now">予定</span>' in page
        assert "最大5分程度の通信断" in page
        assert "NTTの更新</dt><dd>2026年12月20日(日) 10:00" in page
        assert f'href="{s.public}/notices/{stored.id}"' in page
        # The history in words, with what each report changed.
        assert ">新規</td>" in page and ">更新</td>" in page and ">update<" not in page
        assert "工事日時: 12/24(木) 01:00～05:00 → 12/24(木) 02:00～06:00" in page
        # The mail as it goes out for the latest report: subject, greeting and change.
        preview = html.unescape(page.split('id="mail-preview"')[1].split("</div>")[0])
        subject = preview.split("件名:</strong> ")[1].split("</p>")[0]
        assert "【更新】" in subject and "12/24(木) 02:00～06:00" in subject
        assert "ご担当者様" in preview and "■変更点" in preview
        assert "変更前: 12/24(木) 01:00～05:00" in preview
        assert "（購読者ごとのリンクが入ります）" in preview  # not an empty line


def test_every_csv_problem_reads_in_japanese() -> None:
    """What parse_csv finds (the CLI and API keep its English), as the console says it."""
    from jpixd.subscribers import parse_csv
    from jpixd.web.words import csv_problem_in_words

    cases = {
        b"": "ファイルが空です",
        b"mail,name\nx,y\n": "1 行目の「mail」列: 使えない列名です",
        b"email,email\na@isp.example.jp,b@isp.example.jp\n": "同じ列が2つあります",
        b"name\nx\n": "1 行目: 見出しに email 列がありません",
        b"email,name\na@isp.example.jp\n": "2 行目: 列が 1 個あります（見出し行は 2 個）",
        b"email\na@isp.example.jp\na@isp.example.jp\n": "3 行目の「email」列: 2 行目と同じ",
        b"email,carriers\na@isp.example.jp,north\n": "east・west のどちらか",
        b"email\n\xff\xfe\xfd\n": "ファイルの文字コードを読めません",
    }
    for data, expected in cases.items():
        _, problems = parse_csv(data)
        said = [csv_problem_in_words(p) for p in problems]
        assert any(expected in p for p in said), (data, problems, said)
        assert not any(re.search(r"\b(line|column|must|not)\b", p) for p in said), said


def test_the_guard_s_pause_reads_in_japanese() -> None:
    """The guard's reason stays English in the logs, the API and Backlog; the console says
    it in Japanese, and an operator's own words as typed."""
    from jpixd.bounces.rules import judge
    from jpixd.config import BouncesConfig
    from jpixd.web.words import pause_reason_in_words

    verdict = judge(200, 10, 0, BouncesConfig())
    assert verdict.level == "pause"
    said = pause_reason_in_words(verdict.reason)
    assert said.startswith("不達率 5.00%（200 通中 10 通）・苦情率 0.000%（0 通）")
    assert said.endswith("自動で停止しました") and "bounce" not in said
    assert pause_reason_in_words("回線メンテナンスのため") == "回線メンテナンスのため"
    assert pause_reason_in_words(None) == ""


def test_loops_and_their_troubles_read_in_japanese() -> None:
    """Each loop by what it does, and each loop's "degraded" (English in the health API
    and the logs) in Japanese; a message nobody mapped is shown as it is."""
    from jpixd.archive import ArchiveLoop
    from jpixd.backlog.reconciler import Reconciler
    from jpixd.bounces.consumer import BounceConsumer
    from jpixd.channels.sender import ChannelSender
    from jpixd.feeds.poller import FeedPoller
    from jpixd.housekeeping import HousekeepingLoop
    from jpixd.mail.sender import Sender
    from jpixd.web.words import LOOP_LABELS, degraded_in_words

    loops = (ArchiveLoop, Reconciler, BounceConsumer, FeedPoller, HousekeepingLoop, Sender,
             ChannelSender)
    assert {loop.name for loop in loops} == set(LOOP_LABELS)
    assert degraded_in_words("SQS receive failing (3 in a row)") == \
        "SQS からの受信に失敗（3 回連続）"
    assert degraded_in_words("Backlog down") == "Backlog に接続できません"
    assert degraded_in_words("archive sink firehose unavailable: timed out") == \
        "アーカイブ先 firehose に送れません（timed out）"
    assert degraded_in_words("something new") == "something new"


def test_an_import_s_differences_read_in_japanese_and_plain_english() -> None:
    """A dry run's differences, from the rules that make them: the CLI's English line and
    the console's Japanese, each from the same record (nothing parses the English back)."""
    from jpixd.model import Subscriber, SubscriberStatus
    from jpixd.records import ImportDiff
    from jpixd.store.subscribers import plan_import
    from jpixd.web.words import import_diff_in_words

    old = Subscriber(email="a@isp.example.jp", prefectures=("13",),
                     status=SubscriberStatus.UNSUBSCRIBED)
    new = Subscriber(email="a@isp.example.jp", prefectures=("01", "13"))
    plan = plan_import({old.email: old}, [(new, frozenset({"prefectures", "status"})),
                                          (Subscriber(email="b@isp.example.jp"),
                                           frozenset({"email"}))], reactivate=True)
    channel = ImportDiff("c@isp.example.jp", "channel added", kind="webhook",
                         url="https://hooks.example.jp/…abcd", signing_key="0f" * 4)
    diffs = [*plan.diffs, channel]
    assert [str(d) for d in diffs] == [
        "b@isp.example.jp: new",
        "a@isp.example.jp: prefectures 13 → 01,13",  # as the history writes a list
        "a@isp.example.jp: status 'unsubscribed' → 'active'",
        "c@isp.example.jp: channel added webhook https://hooks.example.jp/…abcd "
        "(signing key 0f0f0f0f)"]
    assert [import_diff_in_words(d) for d in diffs] == [
        "b@isp.example.jp: 新規登録",
        "a@isp.example.jp: 対象地域: 東京都 → 北海道、東京都",
        "a@isp.example.jp: 状態: 配信停止 → 配信中",
        "c@isp.example.jp: 通知先を追加 webhook https://hooks.example.jp/…abcd"
        "（署名の鍵 0f0f0f0f）"]
