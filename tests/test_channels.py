"""Channels beyond mail (issue 26), the parts that stand alone: what each channel
receives, checked against the webhook's published JSON Schema and Slack's and Teams'
published limits; the signature as a receiver checks it; which URLs and addresses may be
used; one delivery to a real receiver on loopback that verifies signatures and answers
as told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from jpixd.channels import payloads, post, signing, urls
from jpixd.model import JST, Change, Changed, Notice, NoticeKind, NoticeStatus, TimeWindow

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=JST)
FAILURE = Notice(source="east", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                 status=NoticeStatus.OCCURRED, title="東京都の一部でフレッツ光がご利用しづらい状況",
                 prefectures=("13",), localities=("千代田区", "港区"),
                 services=("フレッツ光ネクスト", "ひかり電話"), report_number=2,
                 starts_at=datetime(2026, 12, 6, 7, 40, tzinfo=JST),
                 url="https://www.ntt-east.co.jp/notice/F1", body="原因を調査中です。")
WORK = Notice(source="west", external_id="W1", carrier="west", kind=NoticeKind.CONSTRUCTION,
              status=NoticeStatus.SCHEDULED, title="大阪府の一部地域における通信設備の更改工事",
              prefectures=("27",), localities=("大阪市中央区",),
              starts_at=datetime(2026, 12, 10, 2, 0, tzinfo=JST),
              ends_at=datetime(2026, 12, 10, 6, 0, tzinfo=JST),
              windows=(TimeWindow(datetime(2026, 12, 10, 2, 0, tzinfo=JST),
                                  datetime(2026, 12, 10, 6, 0, tzinfo=JST)),
                       TimeWindow(datetime(2026, 12, 11, 2, 0, tzinfo=JST),
                                  datetime(2026, 12, 11, 6, 0, tzinfo=JST), reserve=True)),
              changes=(Changed("工事日時", "12/10(木) 01:00～05:00", "12/10(木) 02:00～06:00"),))
PAGE = "https://notice.example.jp/notices/7"


def report(notice: Notice, change: Change = Change.NEW) -> payloads.Report:
    return payloads.Report(7, notice, change, key="jpixd-channel-1-42", page_url=PAGE, now=NOW)


def schema() -> dict[str, Any]:
    text = resources.files("jpixd.channels").joinpath("webhook-v1.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def test_the_webhook_message_is_what_its_schema_says() -> None:
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    recovered = replace(FAILURE, status=NoticeStatus.RECOVERED,
                        ends_at=datetime(2026, 12, 6, 8, 30, tzinfo=JST),
                        changes=(Changed("状況", "発生中", "回復"),
                                 Changed("回復日時", "", "12/6(日) 08:30")))
    cases = [(FAILURE, Change.NEW), (WORK, Change.UPDATE), (recovered, Change.RECOVER),
             (replace(WORK, url=None, changes=()), Change.REMINDER)]
    for notice, change in cases:
        message = payloads.webhook(report(notice, change))
        validator.validate(json.loads(json.dumps(message)))  # as the receiver parses it
    message = payloads.webhook(report(recovered, Change.RECOVER))
    n = message["notice"]
    assert message["event"] == "notice.recover" and message["id"] == "jpixd-channel-1-42"
    assert n["state_label"] == "回復" and n["recovered_at"] == "2026-12-06T08:30:00+09:00"
    assert n["changes"][1] == {"field": "回復日時", "before": None, "after": "12/6(日) 08:30"}
    assert n["prefectures"] == [{"code": "13", "name": "東京都"}]
    assert n["links"] == {"page": PAGE, "source": "https://www.ntt-east.co.jp/notice/F1"}
    work = payloads.webhook(report(WORK, Change.UPDATE))["notice"]
    assert [w["reserve"] for w in work["windows"]] == [False, True]
    # A message that breaks the schema is refused by it (the schema is not a formality).
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**message, "version": 2})


def _huge() -> Notice:
    """What a hostile or very wordy feed can publish."""
    return replace(WORK, title="<script>&工事" * 40, body="回線工事のお知らせ、" * 2000,
                   localities=tuple(f"第{i}町" for i in range(31)),
                   services=tuple(f"サービス{i}" for i in range(60)),
                   changes=tuple(Changed(f"項目{i}", "前" * 200, "後" * 200) for i in range(40)))


def test_slack_gets_block_kit_within_its_limits() -> None:
    message = payloads.slack(report(WORK, Change.UPDATE))
    blocks = message["blocks"]
    assert blocks[0]["text"]["text"] == "【工事】【更新】大阪府の一部地域における通信設備の更改工事"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[0] == "*状況*\n予定"
    assert fields[1] == "*工事日時*\n12/10(木) 02:00～06:00、12/11(金) 02:00～06:00（予備日）"
    assert fields[2] == "*地域*\n大阪府（大阪市中央区）"
    assert "*変更点*\n• 工事日時: 12/10(木) 01:00～05:00 → 12/10(木) 02:00～06:00" in \
        blocks[2]["text"]["text"]
    assert blocks[-1]["elements"][0]["url"] == PAGE
    huge = payloads.slack(report(_huge(), Change.UPDATE))
    # Slack's published limits: header 150, section text 3,000, ten fields of 2,000,
    # 50 blocks, button text 75 and URL 3,000; <, > and & escaped in mrkdwn.
    assert len(huge["blocks"]) <= 50
    for block in huge["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for f in block.get("fields", []):
            assert len(f["text"]) <= 2000
        assert len(block.get("fields", [])) <= 10
        if "text" in block and block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
            assert "<script>" not in block["text"]["text"]
        for element in block.get("elements", []):
            assert len(element["text"]["text"]) <= 75 and len(element["url"]) <= 3000
    assert "&lt;script&gt;&amp;" in json.dumps(huge, ensure_ascii=False)
    assert "ほか19か所" in json.dumps(huge, ensure_ascii=False)  # 31 places, not a wall


def test_teams_gets_an_adaptive_card_within_28_kb() -> None:
    message = payloads.teams(report(FAILURE))
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"] == "【故障】東京都の一部でフレッツ光がご利用しづらい状況"
    assert card["body"][0]["color"] == "Attention"  # a failure now: red
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["状況"] == "発生中" and facts["日時"] == "発生 12/6(日) 07:40"
    assert facts["通信事業者"] == "NTT東日本・第2報"
    recovered = payloads.teams(report(replace(FAILURE, status=NoticeStatus.RECOVERED)))
    assert recovered["attachments"][0]["content"]["body"][0]["color"] == "Good"
    huge = payloads.teams(report(_huge(), Change.UPDATE))
    assert len(json.dumps(huge, ensure_ascii=False).encode()) <= payloads.TEAMS_MAX_BYTES
    assert huge["attachments"][0]["content"]["body"][1]["type"] == "FactSet"


def test_a_signature_is_checked_as_a_receiver_checks_it() -> None:
    secret, body, t = b"s" * 32, b'{"version":1}', 1_800_000_000
    header = signing.signature(secret, body, t)
    assert header.startswith(f"t={t},v1=") and len(header.split("v1=")[1]) == 64
    assert signing.verify(secret, header, body, now=t + 10)
    assert not signing.verify(secret, header, body + b" ", now=t)  # another body
    assert not signing.verify(b"x" * 32, header, body, now=t)  # another secret
    assert not signing.verify(secret, header, body, now=t + 301)  # replayed later
    assert not signing.verify(secret, "v1=" + header.split("v1=")[1], body, now=t)
    rotating = f"{header},v1={'0' * 64}"  # signed under two secrets while rotating
    assert signing.verify(secret, rotating, body, now=t)


def test_only_safe_urls_and_public_addresses() -> None:
    assert urls.check_url("https://hooks.slack.com/services/T/B/x") == \
        "https://hooks.slack.com/services/T/B/x"
    for bad, why in [("http://hooks.example.jp/x", "https"),
                     ("ftp://hooks.example.jp/x", "https"),
                     ("https:///x", "no host"),
                     ("https://user:pw@hooks.example.jp/x", "user or password"),
                     ("https://hooks.example.jp/a b", "spaces"),
                     ("https://hooks.example.jp:99999/x", "cannot be read"),
                     ("https://hooks.example.jp/" + "a" * 2000, "longer than")]:
        with pytest.raises(urls.UnsafeUrl, match=why):
            urls.check_url(bad)
    assert urls.check_url("http://hooks.example.jp/x", allow_http=True)
    refused = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
               "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1%eth0", "fd00:ec2::254",
               "::ffff:127.0.0.1", "::ffff:169.254.169.254", "not an address"]
    assert [a for a in refused if urls.address_allowed(a)] == []
    assert urls.address_allowed("8.8.8.8") and urls.address_allowed("2001:4860:4860::8888")
    # The operator may list networks of its own (an internal ticket system).
    inside = urls.networks(["10.0.0.0/8", "fd00::/8"])
    assert urls.address_allowed("10.1.2.3", inside) and urls.address_allowed("fd00:ec2::254",
                                                                            inside)
    assert not urls.address_allowed("192.168.1.1", inside)


@dataclass
class Receiver:
    """A webhook receiver: checks the signature, records what arrived, answers as told."""

    secret: bytes
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    arrived: list[tuple[bool, bytes]] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = signing.verify(self.secret, request.headers.get(signing.HEADER, ""), body,
                            now=int(datetime.now(UTC).timestamp()))
        self.arrived.append((ok and request.headers.get("Idempotency-Key") ==
                             json.loads(body or b"{}").get("id", ""), body))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        if status == 0:  # answer nothing until the test ends
            await self.never.wait()
        return web.Response(status=status, headers=headers, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver(secret=b"k" * 32)
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield r, f"http://127.0.0.1:{port}/hook"
    finally:
        r.never.set()
        await runner.cleanup()


async def test_one_delivery_to_a_real_receiver(receiver: tuple[Receiver, str]) -> None:
    r, url = receiver
    loopback = urls.networks(["127.0.0.1/32"])  # the operator allows this one receiver
    body = json.dumps(payloads.webhook(report(FAILURE)), ensure_ascii=False).encode()
    now = datetime.now(UTC)
    headers = signing.headers(r.secret, body, "jpixd-channel-1-42", int(now.timestamp()))
    r.answers = [(200, {}), (429, {"Retry-After": "7"}), (503, {}), (410, {}),
                 (302, {"Location": url}), (0, {})]
    async with post.session(loopback) as client:
        outcomes = [await post.post(client, url, body, headers, allowed=loopback, now=now,
                                    limit_s=0.5) for _ in range(6)]
    assert [(o.result, o.status) for o in outcomes] == [
        ("sent", 200), ("retry", 429), ("retry", 503), ("gone", 410), ("failed", 302),
        ("retry", None)]
    assert outcomes[1].retry_after == 7.0 and "0 s" in (outcomes[5].error or "")
    # Six posts, six arrivals, each signed as the receiver checks it and with the
    # message's idempotency key: the 302 was not followed (it would have made a seventh).
    assert len(r.arrived) == 6 and all(ok for ok, _ in r.arrived)
    assert json.loads(r.arrived[0][1])["notice"]["id"] == 7


async def test_a_receiver_on_a_private_address_is_never_reached(
        receiver: tuple[Receiver, str]) -> None:
    r, url = receiver
    now = datetime.now(UTC)
    async with post.session() as client:
        by_address = await post.post(client, url, b"{}", {}, now=now)
        by_name = await post.post(client, url.replace("127.0.0.1", "localhost"), b"{}", {},
                                  now=now)
    assert by_address.result == "failed" and "may not use" in (by_address.error or "")
    assert by_name.result == "failed" and "may not use" in (by_name.error or "")
    assert r.arrived == []


def test_retry_after_as_seconds_or_a_date() -> None:
    now = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert post.retry_after("120", now) == 120.0
    assert post.retry_after("Sun, 06 Dec 2026 00:01:30 GMT", now) == 90.0
    assert post.retry_after("soon", now) is None and post.retry_after(None, now) is None
    assert post.retry_after("99999999", now) == 86400.0  # a day at most
    assert post.retry_after((now - timedelta(hours=1)).strftime(
        "%a, %d %b %Y %H:%M:%S GMT"), now) == 0.0
