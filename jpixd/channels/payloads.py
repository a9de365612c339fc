"""What each channel receives for a notice's report. Pure.

- `webhook`: versioned JSON (docs/webhook-v1.schema.json): the notice's facts, state,
  times, area, services, what changed (the mail's ■変更点) and links, with the message's
  idempotency key.
- `slack`: Block Kit for an incoming webhook, within Slack's published limits (a header
  of 150 characters, section text of 3,000, ten fields of 2,000 each, 50 blocks).
- `teams`: an Adaptive Card (1.4) in the message envelope Teams' incoming webhooks and
  Workflows take, within its 28 KB message size.
Each shows state, times, area and what changed first: what a NOC reads in a channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jpixd.changes import times_text
from jpixd.mail.render import CARRIER_LABELS, KIND_LABELS, short_span
from jpixd.model import Change, Notice, NoticeKind, notice_windows, recovered_at
from jpixd.prefectures import NAME_BY_CODE
from jpixd.timeline import badge, label_now

VERSION = 1
# What the event says happened, as a receiver filters on it.
EVENTS = {Change.NEW: "notice.new", Change.UPDATE: "notice.update",
          Change.CANCEL: "notice.cancel", Change.COMPLETE: "notice.complete",
          Change.RECOVER: "notice.recover", Change.REMINDER: "notice.reminder"}
# The subject's marker, for the headline a chat shows.
MARKERS = {Change.UPDATE: "【更新】", Change.CANCEL: "【中止】", Change.COMPLETE: "【完了】",
           Change.RECOVER: "【回復】", Change.REMINDER: "【リマインド】"}

SLACK_HEADER_MAX, SLACK_TEXT_MAX, SLACK_FIELD_MAX, SLACK_FIELDS = 150, 3000, 2000, 10
TEAMS_MAX_BYTES = 28 * 1024
BODY_MAX = 1000  # a chat shows the start; the whole text is on the notice's page


@dataclass(frozen=True)
class Report:
    """One report of a notice, as a channel message carries it."""

    notice_id: int
    notice: Notice
    change: Change
    key: str  # the message's idempotency key: the same on every attempt
    page_url: str | None  # the notice's own page, when the public pages are on
    now: datetime


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _times(n: Notice) -> str:
    if n.kind == NoticeKind.FAILURE:
        started = short_span(n.starts_at, None)
        recovered = recovered_at(n)
        return "、".join(x for x in (f"発生 {started}" if started else "",
                                     f"回復 {short_span(recovered, None)}" if recovered else "")
                         if x)
    return times_text(n)


def _area(n: Notice) -> str:
    where = "、".join(NAME_BY_CODE.get(c, c) for c in n.prefectures) or "（地域の記載なし）"
    if n.localities:
        shown = "、".join(n.localities[:12])
        more = f" ほか{len(n.localities) - 12}か所" if len(n.localities) > 12 else ""
        where += f"（{shown}{more}）"
    return where


def headline(r: Report) -> str:
    """「【故障】【回復】東京都の一部で…」: kind, what this report is, title."""
    n = r.notice
    return f"【{KIND_LABELS.get(n.kind, '')}】{MARKERS.get(r.change, '')}{n.title}"


def webhook(r: Report) -> dict[str, Any]:
    n = r.notice
    state = label_now(n, r.now)
    recovered = recovered_at(n)
    return {
        "version": VERSION,
        "id": r.key,
        "event": EVENTS.get(r.change, "notice.update"),
        "sent_at": r.now.isoformat(),
        "notice": {
            "id": r.notice_id,
            "carrier": n.carrier, "carrier_label": CARRIER_LABELS.get(n.carrier, n.carrier),
            "kind": str(n.kind), "kind_label": KIND_LABELS.get(n.kind, str(n.kind)),
            "status": str(n.status), "state_label": state,
            "title": n.title, "headline": headline(r),
            "report_number": n.report_number,
            "windows": [{"start": w.start.isoformat(),
                         "end": w.end.isoformat() if w.end else None,
                         "reserve": w.reserve} for w in notice_windows(n)],
            "recovered_at": recovered.isoformat() if recovered else None,
            "prefectures": [{"code": c, "name": NAME_BY_CODE.get(c, c)} for c in n.prefectures],
            "localities": list(n.localities),
            "services": list(n.services),
            "changes": [{"field": c.label, "before": c.before or None, "after": c.after}
                        for c in n.changes],
            "body": n.body,
            "published_at": n.published_at.isoformat() if n.published_at else None,
            "links": {"page": r.page_url, "source": n.url},
        },
    }


def _changes_text(r: Report) -> str:
    return "\n".join(f"• {c.label}: {c.before} → {c.after}" if c.before
                     else f"• {c.label}: {c.after}" for c in r.notice.changes)


def _facts(r: Report) -> list[tuple[str, str]]:
    """(label, value) pairs every chat shows, state and time first."""
    n = r.notice
    facts = [("状況", label_now(n, r.now))]
    times = _times(n)
    if times:
        facts.append(("工事日時" if n.kind == NoticeKind.CONSTRUCTION else "日時", times))
    facts.append(("地域", _area(n)))
    if n.services:
        facts.append(("サービス", "、".join(n.services)))
    facts.append(("通信事業者", CARRIER_LABELS.get(n.carrier, n.carrier)
                  + (f"・第{n.report_number}報" if n.report_number else "")))
    return facts


def _links(r: Report) -> list[tuple[str, str]]:
    """The notice's own page and NTT's, as buttons (web links only)."""
    return [(label, url) for label, url in (("経過と最新の状況", r.page_url),
                                            ("NTTの掲載ページ", r.notice.url))
            if url and url.startswith(("https://", "http://"))]


def _mrkdwn(text: str) -> str:
    """Slack's three escapes (its docs: &, < and > are control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(r: Report) -> dict[str, Any]:
    title = headline(r)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": False,
                                    "text": _cut(title, SLACK_HEADER_MAX)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{label}*\n{_mrkdwn(value)}", SLACK_FIELD_MAX)}
            for label, value in _facts(r)][:SLACK_FIELDS]},
    ]
    if r.notice.changes:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            "*変更点*\n" + _mrkdwn(_changes_text(r)), SLACK_TEXT_MAX)}})
    if r.notice.body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            _mrkdwn(_cut(r.notice.body, BODY_MAX)), SLACK_TEXT_MAX)}})
    links = _links(r)
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
            for label, url in links]})
    # `text` is what a notification and a screen reader show (read as mrkdwn: escaped).
    return {"text": _cut(_mrkdwn(title), SLACK_TEXT_MAX), "blocks": blocks}


# The card's colour for the state's badge (jpixd.timeline.BADGES' colour classes).
_TEAMS_COLOUR = {"failing": "Attention", "partial": "Warning", "recovered": "Good",
                 "postponed": "Warning", "planned": "Accent", "running": "Accent"}


def teams(r: Report) -> dict[str, Any]:
    _, colour = badge(r.notice, r.now)
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": headline(r), "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": _TEAMS_COLOUR.get(colour, "Default")},
        {"type": "FactSet", "facts": [{"title": label, "value": value}
                                      for label, value in _facts(r)]},
    ]
    if r.notice.changes:
        body.append({"type": "TextBlock", "text": "**変更点**\n\n" + _changes_text(r),
                     "wrap": True})
    body_text = _cut(r.notice.body, BODY_MAX)
    if body_text:
        body.append({"type": "TextBlock", "text": body_text, "wrap": True,
                     "isSubtle": True})
    actions = [{"type": "Action.OpenUrl", "title": label, "url": url}
               for label, url in _links(r)]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "body": body,
            **({"actions": actions} if actions else {})}
    message = {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": card}]}
    # Within Teams' 28 KB: the text is what gives way (a 20,000-character notice).
    while len(json.dumps(message, ensure_ascii=False).encode()) > TEAMS_MAX_BYTES and \
            len(body) > 2:
        body.pop()
    return message


VERIFICATION_TEXT = ("jpixd からのテストメッセージです。このチャンネルに NTT 東西の"
                     "工事・故障のお知らせをお送りします。")


def verification(kind: str, key: str, now: datetime) -> dict[str, Any]:
    """What a channel's test message carries (a new channel is verified by it)."""
    if kind == "slack":
        return {"text": VERIFICATION_TEXT, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": VERIFICATION_TEXT}}]}
    if kind == "teams":
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard", "version": "1.4",
                "body": [{"type": "TextBlock", "text": VERIFICATION_TEXT, "wrap": True}]}
        return {"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
            "content": card}]}
    return {"version": VERSION, "id": key, "event": "channel.test",
            "sent_at": now.isoformat(), "notice": None, "message": VERIFICATION_TEXT}


BUILDERS = {"webhook": webhook, "slack": slack, "teams": teams}


def body(kind: str, report: Report) -> bytes:
    """A report as `kind` receives it, encoded (UTF-8 JSON, no ASCII escapes)."""
    return json.dumps(BUILDERS[kind](report), ensure_ascii=False).encode()
