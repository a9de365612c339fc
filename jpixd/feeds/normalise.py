"""From what a parser read (a Draft) to a Notice, its revision hash, and what changed.

Pure. Parsers only find text; every judgement about Japanese words, prefectures, times,
services and what counts as a change lives here, once, for every source kind.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from jpixd import prefectures
from jpixd.feeds.jptime import normalise_text, parse_datetime, parse_span
from jpixd.model import Change, Notice, NoticeKind, NoticeStatus


class ItemError(Exception):
    """One item cannot become a notice; it is quarantined, the rest of the feed goes on."""

    def __init__(self, ref: str, reason: str, payload: str = "") -> None:
        super().__init__(f"{ref}: {reason}")
        self.ref = ref
        self.reason = reason
        self.payload = payload  # the item as received, for the quarantine


@dataclass(frozen=True)
class Draft:
    """What a parser found for one item, as text; explicit values where a source has them."""

    external_id: str
    title: str
    body: str = ""
    url: str | None = None
    categories: tuple[str, ...] = ()
    kind: str | None = None  # explicit kind (json) or None: judged from words
    status: str | None = None  # explicit status, or a status cell's text
    when_text: str = ""  # the text holding the planned window / occurrence time
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    recovered_text: str = ""  # 回復日時
    area_text: str = ""  # 影響エリア / 対象エリア
    prefectures: tuple[str, ...] = ()  # explicit names or codes
    services_text: str = ""  # 影響サービス
    services: tuple[str, ...] = ()
    report_number: int | None = None
    published: datetime | None = None


_FAILURE_WORDS = ("故障", "障害", "不具合", "ご利用しづらい", "つながりにくい", "利用できない")
_CONSTRUCTION_WORDS = ("工事", "メンテナンス", "保守作業", "作業のお知らせ")

_STATUS_VALUES = {s.value for s in NoticeStatus}
# Checked in order: the first that appears wins (中止 before 予定: 「予定していた工事を中止」).
_CONSTRUCTION_STATUS = (
    (NoticeStatus.CANCELLED, ("中止", "取りやめ", "取止め", "延期")),
    (NoticeStatus.COMPLETED, ("完了", "終了しました", "作業終了")),
    (NoticeStatus.IN_PROGRESS, ("実施中", "作業中", "工事中")),
    (NoticeStatus.SCHEDULED, ("予定", "実施します", "お知らせ")),
)
# 復旧見込 / 復旧作業 talk about recovery without it having happened.
_NOT_YET = re.compile(r"(回復|復旧)(見込|見通し|作業|に向け|時期|予定|未定|の目途)")
_RECOVERED = re.compile(r"(回復|復旧)")

KNOWN_SERVICES = (
    "フレッツ光ネクスト", "フレッツ光クロス", "フレッツ光ライト", "フレッツ光", "フレッツ・ADSL",
    "フレッツ・ISDN", "フレッツ・VPN", "フレッツ 光ネクスト", "ひかり電話", "光アクセスサービス",
    "加入電話", "INSネット", "ビジネスイーサ", "IP電話", "IPv6", "光回線",
)

_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|yclid|mc_[a-z]+|_ga|ref|source)$")


def _clean(text: str) -> str:
    """One line of text: no control characters, single spaces (NFC, not NFKC: keep ㈱)."""
    t = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", t)).strip()


def _clean_body(text: str) -> str:
    lines = [re.sub(r"[ \t\u3000]+", " ", ln).strip() for ln in text.splitlines()]
    out: list[str] = []
    for ln in lines:
        if ln or (out and out[-1]):
            out.append(ln)
    return "\n".join(out).strip()


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """Absolute, without tracking parameters or a fragment, query sorted."""
    if not url:
        return None
    absolute = urljoin(base or "", url.strip())
    parts = urlsplit(absolute)
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not _TRACKING.match(k))
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, urlencode(query), ""))


def judge_kind(draft: Draft) -> NoticeKind:
    if draft.kind:
        try:
            return NoticeKind(draft.kind.strip().lower())
        except ValueError:
            pass
    text = normalise_text(" ".join([*draft.categories, draft.kind or "", draft.title]))
    for words, kind in ((_FAILURE_WORDS, NoticeKind.FAILURE),
                        (_CONSTRUCTION_WORDS, NoticeKind.CONSTRUCTION)):
        if any(w in text for w in words):
            return kind
    body = normalise_text(draft.body[:500])
    if any(w in body for w in _FAILURE_WORDS):
        return NoticeKind.FAILURE
    if any(w in body for w in _CONSTRUCTION_WORDS):
        return NoticeKind.CONSTRUCTION
    raise ItemError(draft.external_id, "cannot tell whether it is construction (工事) or a "
                                       "failure (故障/障害): no kind and no telling word")


def judge_status(draft: Draft, kind: NoticeKind) -> NoticeStatus:
    if draft.status and draft.status.strip().lower() in _STATUS_VALUES:
        return NoticeStatus(draft.status.strip().lower())
    texts = [normalise_text(t) for t in (draft.status or "", *draft.categories, draft.title)
             if t]
    if kind == NoticeKind.FAILURE:
        recovered_at = normalise_text(draft.recovered_text)
        # A filled-in 回復日時 (a time, not 「未定」 or 「-」) means it has recovered.
        if re.search(r"\d", recovered_at) and "未定" not in recovered_at:
            return NoticeStatus.RECOVERED
        for t in [*texts, recovered_at]:
            cleaned = _NOT_YET.sub("", t)
            if _RECOVERED.search(cleaned):
                return NoticeStatus.RECOVERED
        return NoticeStatus.OCCURRED
    for t in texts:
        for status, words in _CONSTRUCTION_STATUS:
            if any(w in t for w in words):
                return status
    return NoticeStatus.SCHEDULED


def find_services(draft: Draft) -> tuple[str, ...]:
    if draft.services:
        return tuple(dict.fromkeys(_clean(s) for s in draft.services if _clean(s)))
    if draft.services_text:
        # 「ひかり電話:約1万回線→回復、光アクセスサービス:約1.5万回線」: names before ':'.
        parts = re.split(r"[、,\n/／]|\s{2,}", draft.services_text)
        names = [_clean(re.split(r"[:：(（]", p, maxsplit=1)[0]) for p in parts]
        found = [n for n in names if n and len(n) <= 40]
        if found:
            return tuple(dict.fromkeys(found))
    text = unicodedata.normalize("NFKC", f"{draft.title} {draft.body}")
    hits: list[str] = []
    for name in KNOWN_SERVICES:
        n = unicodedata.normalize("NFKC", name)
        if n in text and not any(n in h for h in hits):
            hits.append(name)
    return tuple(hits)


def find_localities(area_text: str) -> tuple[str, ...]:
    """「厚真町、むかわ町、安平町の各一部」 → (厚真町, むかわ町, 安平町)."""
    text = _clean(area_text)
    for pref, _code in prefectures.names_in_order():
        text = text.replace(pref + "の", "").replace(pref, " ")
    text = re.sub(r"(の各?一部|全域|の一部地域|一部地域|など|等|周辺)", " ", text)
    parts = [p.strip(" ・、,") for p in re.split(r"[、,・\s]+", text)]
    return tuple(dict.fromkeys(p for p in parts if p and len(p) <= 30))


def find_prefectures(draft: Draft) -> tuple[str, ...]:
    codes = {c for c in (prefectures.code_of(p) for p in draft.prefectures) if c}
    if codes:
        return tuple(sorted(codes))
    for text in (draft.area_text, draft.title, draft.body):
        found = prefectures.in_text(text)
        if found:
            return found
    return ()


def find_report_number(draft: Draft) -> int | None:
    if draft.report_number is not None:
        return draft.report_number
    m = re.search(r"第\s*(\d+)\s*報", normalise_text(f"{draft.title} {draft.body}"))
    return int(m.group(1)) if m else None


def _times(draft: Draft, kind: NoticeKind, status: NoticeStatus,
           ref: datetime) -> tuple[datetime | None, datetime | None]:
    if draft.starts_at is not None:
        return draft.starts_at, draft.ends_at
    when = draft.when_text or f"{draft.title}\n{draft.body}"
    span = parse_span(when, ref)
    start, end = (span.start, span.end) if span else (None, None)
    if kind == NoticeKind.FAILURE and draft.recovered_text:
        recovered = parse_datetime(draft.recovered_text, ref)
        if recovered is not None and status == NoticeStatus.RECOVERED:
            end = recovered
    return start, end


def normalise(draft: Draft, *, source: str, carrier: str, ref: datetime,
              base_url: str | None = None) -> Notice:
    """A Notice, or ItemError naming what is missing."""
    external_id = _clean(draft.external_id)
    if not external_id:
        raise ItemError(draft.title[:40] or "?", "no id, link or guid to identify the item")
    title = _clean(draft.title)
    if not title:
        raise ItemError(external_id, "no title")
    kind = judge_kind(draft)
    status = judge_status(draft, kind)
    reference = draft.published or ref
    starts, ends = _times(draft, kind, status, reference)
    return Notice(
        source=source, external_id=external_id, carrier=carrier, kind=kind, status=status,
        title=title, body=_clean_body(draft.body), starts_at=starts, ends_at=ends,
        prefectures=find_prefectures(draft), localities=find_localities(draft.area_text),
        services=find_services(draft), url=canonical_url(draft.url, base_url),
        report_number=find_report_number(draft),
    )


# --------------------------------------------------------------------------- revisions


def _meaningful(n: Notice) -> dict[str, object]:
    """What a reader would notice. Sorted lists: a reordered area list is no change."""
    return {
        "kind": str(n.kind), "status": str(n.status), "title": n.title, "body": n.body,
        "starts_at": n.starts_at.isoformat() if n.starts_at else None,
        "ends_at": n.ends_at.isoformat() if n.ends_at else None,
        "prefectures": sorted(n.prefectures), "localities": sorted(n.localities),
        "services": sorted(n.services), "report_number": n.report_number,
        "carrier": n.carrier,
    }


def revision_of(n: Notice) -> str:
    """Hash of the normalised content; the URL (tracking already stripped) counts too, so
    a moved detail page is recorded, silently (see `classify`)."""
    data = {**_meaningful(n), "url": n.url}
    blob = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def classify(old: Notice | None, new: Notice) -> Change:
    """What a new revision means to a reader."""
    if old is None:
        return Change.NEW
    if _meaningful(old) == _meaningful(new):
        return Change.SILENT
    if new.status != old.status:
        transitions = {NoticeStatus.CANCELLED: Change.CANCEL,
                       NoticeStatus.COMPLETED: Change.COMPLETE,
                       NoticeStatus.RECOVERED: Change.RECOVER}
        if new.status in transitions:
            return transitions[new.status]
    return Change.UPDATE
