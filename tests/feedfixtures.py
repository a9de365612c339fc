"""Fixtures in the shape NTT publishes (which cannot be fetched from here): built in
code so that each test says exactly which report, status and encoding it is about.

Modelled on NTT's public pages: numbered reports 第N報 with an "as of" time, the fields
発生日時 / 影響エリア / 影響サービスおよび影響規模 / 措置状況・復旧見込 / 回復日時, planned windows
such as 2026年12月3日(木) 0:00～6:00, and Shift_JIS pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

SJIS = "cp932"


@dataclass
class RssItem:
    title: str
    link: str
    description: str = ""
    pub_date: str = "Sat, 28 Nov 2026 14:30:00 +0900"
    guid: str | None = None
    category: str | None = None


def rss2(items: list[RssItem], *, encoding: str = "utf-8", declared: str | None = None,
         channel: str = "工事・故障情報") -> bytes:
    decl = declared or {"cp932": "Shift_JIS", "euc_jp": "EUC-JP"}.get(encoding, encoding)
    parts = [f'<?xml version="1.0" encoding="{decl}"?>\n<rss version="2.0"><channel>',
             f"<title>{escape(channel)}</title><link>https://www.example.ntt-west.jp/</link>",
             "<description>NTT西日本 工事・故障情報</description>"]
    for it in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(it.title)}</title><link>{escape(it.link)}</link>")
        parts.append(f"<description>{escape(it.description)}</description>")
        parts.append(f"<pubDate>{it.pub_date}</pubDate>")
        if it.guid:
            parts.append(f'<guid isPermaLink="false">{escape(it.guid)}</guid>')
        if it.category:
            parts.append(f"<category>{escape(it.category)}</category>")
        parts.append("</item>")
    parts.append("</channel></rss>\n")
    return "".join(parts).encode(encoding)


def rdf(items: list[RssItem], *, encoding: str = "euc_jp") -> bytes:
    """RSS 1.0 (RDF), as older Japanese sites still publish."""
    decl = {"cp932": "Shift_JIS", "euc_jp": "EUC-JP"}.get(encoding, encoding)
    seq = "".join(f'<rdf:li rdf:resource="{escape(i.link)}"/>' for i in items)
    body = "".join(
        f'<item rdf:about="{escape(i.link)}"><title>{escape(i.title)}</title>'
        f"<link>{escape(i.link)}</link><description>{escape(i.description)}</description>"
        f"<dc:date>2026-11-28T14:30:00+09:00</dc:date></item>" for i in items)
    return (f'<?xml version="1.0" encoding="{decl}"?>\n'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            '<channel rdf:about="https://example.jp/rss"><title>工事情報</title>'
            f"<link>https://example.jp/</link><description>d</description>"
            f"<items><rdf:Seq>{seq}</rdf:Seq></items></channel>{body}</rdf:RDF>\n"
            ).encode(encoding)


def atom(entries: list[RssItem]) -> bytes:
    body = "".join(
        f"<entry><title>{escape(e.title)}</title><link href=\"{escape(e.link)}\"/>"
        f"<id>{escape(e.guid or e.link)}</id><updated>2026-11-28T05:30:00Z</updated>"
        f"<summary>{escape(e.description)}</summary></entry>" for e in entries)
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom"><title>お知らせ</title>'
            '<id>urn:example</id><updated>2026-11-28T05:30:00Z</updated>'
            f"{body}</feed>\n").encode()


def west_failure_detail(*, title: str, report: int, as_of: str, occurred: str, area: str,
                        services: list[str], measures: str, recovered: str = "",
                        encoding: str = SJIS) -> bytes:
    svc = "<br>".join(escape(s) for s in services)
    html = f"""<!DOCTYPE html>
<html lang="ja"><head><meta charset="Shift_JIS"><title>故障情報｜NTT西日本</title></head>
<body><div id="header">NTT西日本 工事・故障情報</div>
<div class="main">
<h1>{escape(title)}</h1>
<p class="report">第{report}報（{escape(as_of)}現在）</p>
<p>ご利用のお客さまには大変ご迷惑をおかけしております。</p>
<table class="detail">
<tr><th>発生日時</th><td>{escape(occurred)}</td></tr>
<tr><th>影響エリア</th><td>{escape(area)}</td></tr>
<tr><th>影響サービスおよび影響規模</th><td>{svc}</td></tr>
<tr><th>措置状況・復旧見込</th><td>{escape(measures)}</td></tr>
<tr><th>回復日時</th><td>{escape(recovered) or "－"}</td></tr>
</table>
<p class="note">※下線部は前回からの変更箇所です。</p>
</div></body></html>
"""
    return html.encode(encoding)


def west_construction_detail(*, title: str, when: str, area: str, services: list[str],
                             content: str, status: str = "予定",
                             encoding: str = SJIS) -> bytes:
    html = f"""<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">
<title>工事情報｜NTT西日本</title></head><body>
<h1>{escape(title)}</h1>
<table>
<tr><th>工事日時</th><td>{escape(when)}</td></tr>
<tr><th>工事エリア</th><td>{escape(area)}</td></tr>
<tr><th>影響サービス</th><td>{escape("、".join(services))}</td></tr>
<tr><th>工事内容・影響</th><td>{escape(content)}</td></tr>
<tr><th>状況</th><td>{escape(status)}</td></tr>
</table></body></html>
"""
    return html.encode(encoding)


@dataclass
class EastRow:
    number: str
    when: str
    area: str
    services: str = "フレッツ光ネクスト、ひかり電話"
    content: str = "通信設備の更改工事に伴い、最大5分程度の通信断が発生します。"
    status: str = "予定"


def east_page(construction: dict[str, list[EastRow]], failures: dict[str, list[EastRow]],
              *, encoding: str = SJIS, column_order: str = "standard") -> bytes:
    """Sections 工事情報 / 故障情報, a heading per prefecture and a table each."""
    def table(rows: list[EastRow], kind: str) -> str:
        when_head = "工事日時" if kind == "construction" else "発生日時"
        heads = ["No.", when_head, "対象エリア", "影響サービス", "内容", "状況"]
        if column_order == "moved":  # a layout change: columns reordered, one renamed
            heads = ["状況", "対象エリア", "No.", "影響サービス", "工事内容・影響", when_head]

        def cell(row: EastRow, head: str) -> str:
            return escape({"No.": row.number, when_head: row.when, "対象エリア": row.area,
                           "影響サービス": row.services, "内容": row.content,
                           "工事内容・影響": row.content, "状況": row.status}[head])
        out = ["<table class=\"info\"><tr>", *(f"<th>{h}</th>" for h in heads), "</tr>"]
        for r in rows:
            out.append("<tr>" + "".join(f"<td>{cell(r, h)}</td>" for h in heads) + "</tr>")
        out.append("</table>")
        return "".join(out)

    parts = ['<html><head><meta charset="Shift_JIS"><title>工事・故障情報</title></head><body>',
             "<div id=\"nav\"><a href=\"/\">トップ</a></div>", "<h2>工事情報</h2>"]
    for pref, rows in construction.items():
        parts += [f"<h3>{pref}</h3>", table(rows, "construction")]
    parts.append("<h2>故障情報</h2>")
    if not failures:
        parts.append("<p>現在、故障情報はありません。</p>")
    for pref, rows in failures.items():
        parts += [f"<h3>{pref}</h3>", table(rows, "failure")]
    parts.append("</body></html>")
    return "".join(parts).encode(encoding)


def json_notices(notices: list[dict[str, Any]]) -> bytes:
    return json.dumps({"notices": notices}, ensure_ascii=False).encode("utf-8")
