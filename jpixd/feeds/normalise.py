"""From what a parser read (a Draft) to a Notice, its revision hash, and what changed.

Pure. Parsers only find text; every judgement about Japanese words, prefectures, times,
services and what counts as a change lives here, once, for every source kind.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from jpixd import prefectures
from jpixd.feeds import status as status_rules
from jpixd.feeds.jptime import normalise_text, parse_datetime, parse_windows
from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, TimeWindow


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
    status: str | None = None  # explicit status, or a status cell's text (状況)
    remarks: str = ""  # 備考: where 中止, 延期, 予備日 and 終了しました are written
    measures: str = ""  # 措置状況・復旧見込
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
    published_text: str = ""  # 掲載日時 / 更新日時 as the page writes it
    needs_detail: bool = False  # the fields are on the linked page (fetched by the poller)


# Read in tiers: 故障/障害 say failure outright; 工事 says construction; the phrases that
# describe an outage's effect (ご利用しづらい, への影響) say failure only when nothing says
# 工事 ("工事に伴いご利用できない時間帯" is construction).
_FAILURE_WORDS = ("故障", "障害", "不具合")
_EFFECT_WORDS = ("ご利用しづらい", "つながりにくい", "利用できない", "ご利用いただけない",
                 "への影響", "影響規模")
_CONSTRUCTION_WORDS = ("工事", "メンテナンス", "保守作業", "作業のお知らせ")

_STATUS_VALUES = {s.value for s in NoticeStatus} - {"withdrawn"}
# NTT's own bracketed prefixes (【障害発生】, 【回復】, 【工事】, （第2報）, [更新]): taken as
# evidence and removed from the title jpixd shows, so that a subject never reads
# 「【故障】【回復】【第1報】【障害発生】…」.
_TITLE_TAG = re.compile(
    r"^\s*(?:【([^】]{1,16})】|\[([^\]]{1,16})\]|[(（]([^)）]{1,10})[)）])\s*")
_TRAILING_TAG = re.compile(r"\s*[(（【]([^)）】]{1,12})[)）】]\s*$")
_TAG_WORDS = re.compile(r"故障|障害|工事|回復|復旧|発生|更新|中止|延期|完了|終了|報|お知らせ"
                        r"|予定|重要|メンテナンス|続報|速報|緊急")
_REPORT = re.compile(r"第\s*(\d{1,6})\s*報")
# Tags that speak of status (【障害発生】, （回復）, 【工事中止】); 【故障】 or 【工事】 alone only
# name the kind.
_STATUS_TAG = re.compile(r"回復|復旧|発生|中止|延期|完了|終了|実施中")
MAX_REPORT_NUMBER = 10_000

KNOWN_SERVICES = (
    "光アクセスサービス（フレッツ光等）",
    "フレッツ光ネクスト", "フレッツ光クロス", "フレッツ光ライト", "フレッツ光", "フレッツ・ADSL",
    "フレッツ・ISDN", "フレッツ・VPN", "フレッツ 光ネクスト", "ひかり電話", "光アクセスサービス",
    "加入電話", "INSネット", "ビジネスイーサ", "IP電話", "IPv6", "光回線",
)

_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|yclid|mc_[a-z]+|_ga|ref|source)$")


def _clean(text: str) -> str:
    """One line of text: no control characters, single spaces (NFC, not NFKC: keep ㈱)."""
    t = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", t)).strip()


MAX_TITLE = 200  # characters; a longer title is cut with an ellipsis
MAX_BODY = 20_000
MAX_ID = 1000
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _clean_body(text: str) -> str:
    """Lines without control characters (NUL, BEL, ESC never reach a mail), single
    spaces, no runs of blank lines, at most MAX_BODY characters."""
    text = _BODY_CONTROL.sub("", unicodedata.normalize("NFC", text[:MAX_BODY * 2]))
    lines = [re.sub(r"[ \t\u3000]+", " ", ln).strip() for ln in text.splitlines()]
    out: list[str] = []
    for ln in lines:
        if ln or (out and out[-1]):
            out.append(ln)
    body = "\n".join(out).strip()
    return body if len(body) <= MAX_BODY else body[:MAX_BODY - 1] + "…"


def _cap(title: str) -> str:
    return title if len(title) <= MAX_TITLE else title[:MAX_TITLE - 1].rstrip() + "…"


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """Absolute, without tracking parameters or a fragment, query sorted."""
    if not url:
        return None
    absolute = urljoin(base or "", url.strip())
    parts = urlsplit(absolute)
    if parts.scheme not in ("http", "https", "file"):
        return None  # javascript:, data:, … never reach a mail
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not _TRACKING.match(k))
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, urlencode(query), ""))


def judge_kind(draft: Draft) -> NoticeKind:
    if draft.kind:
        try:
            return NoticeKind(draft.kind.strip().lower())
        except ValueError:
            pass
    title = normalise_text(" ".join([*draft.categories, draft.kind or "", draft.title]))
    for text in (title, normalise_text(draft.body[:500])):
        for words, kind in ((_FAILURE_WORDS, NoticeKind.FAILURE),
                            (_CONSTRUCTION_WORDS, NoticeKind.CONSTRUCTION),
                            (_EFFECT_WORDS, NoticeKind.FAILURE)):
            if any(w in text for w in words):
                return kind
    raise ItemError(draft.external_id, "cannot tell whether it is construction (工事) or a "
                                       "failure (故障/障害): no kind and no telling word")


def split_title(title: str) -> tuple[str, tuple[str, ...]]:
    """The title without NTT's bracketed prefixes and suffixes, and those tags."""
    tags: list[str] = []
    t = _clean(title)
    while m := _TITLE_TAG.match(t):
        tag = next(g for g in m.groups() if g is not None)
        if not _TAG_WORDS.search(tag):
            break
        tags.append(tag)
        t = t[m.end():]
    while (m := _TRAILING_TAG.search(t)) and _TAG_WORDS.search(m.group(1)) and m.start() > 0:
        tags.append(m.group(1))
        t = t[:m.start()]
    return t.strip() or _clean(title), tuple(tags)


def _recovered_cell(text: str) -> str:
    """A 回復日時 cell with a time in it (not 未定, not 見込) says 回復."""
    t = normalise_text(text)
    if re.search(r"\d", t) and not re.search(r"未定|見込|予定|目途|めど|まで", t):
        return "回復"
    return t


def judge_status(draft: Draft, kind: NoticeKind) -> status_rules.Judgement:
    """The status the draft states, or None when it states nothing plainly."""
    if draft.status and draft.status.strip().lower() in _STATUS_VALUES:
        return status_rules.Judgement(NoticeStatus(draft.status.strip().lower()), "status")
    _title, tags = split_title(draft.title)
    status_tags = [t for t in tags if _STATUS_TAG.search(t)]
    fields = [("状況", draft.status or ""), ("備考", draft.remarks),
              ("措置状況", draft.measures), ("回復日時", _recovered_cell(draft.recovered_text)),
              *(("tag", t) for t in status_tags),
              *(("category", c) for c in draft.categories),
              ("title", _title), ("body", draft.body)]
    return status_rules.judge(kind, fields)


def find_services(draft: Draft) -> tuple[str, ...]:
    if draft.services:
        return tuple(dict.fromkeys(_clean(s) for s in draft.services if _clean(s)))
    if draft.services_text:
        found = _service_names(draft.services_text)
        if found:
            return found
    text = unicodedata.normalize("NFKC", f"{draft.title} {draft.body}")
    hits: list[str] = []
    for name in KNOWN_SERVICES:
        n = unicodedata.normalize("NFKC", name)
        if n in text and not any(n in h for h in hits):
            hits.append(name)
    return tuple(hits)


_SUBHEAD = re.compile(r"^[<＜〈(（\[【].*[>＞〉)）\]】]$")
_NOT_SERVICE = re.compile(r"^(?:うち|内訳|その他|等|など|計|合計|影響規模|影響サービス|※.*)$")


def _service_names(text: str) -> tuple[str, ...]:
    """「ひかり電話:約1万回線→回復」, 「光アクセスサービス（フレッツ光等）:約1.5万回線」,
    「(電話系サービス)」 sub-headers and 「うち…」 lines: the service names, with the name in
    brackets kept too (a subscriber filtering on フレッツ光 must get 光アクセスサービス's news)."""
    names: list[str] = []
    for part in re.split(r"[、,\n/／]|\s{2,}", text):
        part = _clean(part)
        if not part or _SUBHEAD.match(part):
            continue
        name = re.split(r"[:：]", part, maxsplit=1)[0].strip()
        if re.match(r"^(?:うち|内訳|※)", name):
            continue  # 「うち 沿岸部 :約3万回線」: a part of the line above, not a service
        name = re.sub(r"^[・･\-‐]\s*", "", name)
        inner = re.findall(r"[(（]([^)）]{1,30})[)）]", name)
        head = re.sub(r"\s*[(（][^)）]*[)）]", "", name)
        for n in (head, *inner):
            n = re.sub(r"\s*(?:等|など|ほか)$", "", n).strip()
            n = re.sub(r"約?[\d.,万千]+回線.*$", "", n).strip()
            if n and len(n) <= 40 and not _NOT_SERVICE.match(n) and not re.search(r"\d", n):
                names.append(n)
    return tuple(dict.fromkeys(names))


def find_localities(area_text: str) -> tuple[str, ...]:
    """「厚真町、むかわ町、安平町の各一部」 → (厚真町, むかわ町, 安平町)."""
    text = _clean(area_text)
    for pref, _code in prefectures.names_in_order():
        text = text.replace(pref + "の", "").replace(pref, " ")
    text = re.sub(r"(の各?一部(?:エリア|地域)?|全域|の一部地域|一部地域|など|等|周辺)", " ", text)
    text = re.sub(r"[①-⑳]|\(\d{1,2}\)", " ", text)
    parts = [p.strip(" ・、,") for p in re.split(r"[、,・\s]+", text)]
    return tuple(dict.fromkeys(p for p in parts if p and len(p) <= 30
                               and p not in _NOT_LOCALITY))


_NOT_LOCALITY = frozenset({"一部", "一部エリア", "エリア", "各一部", "の一部", "地域", "全域",
                           "及び", "および", "ほか", "各", "全エリア"})


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
    """The report's own number: an explicit one, else the title's, else the body's first."""
    number = draft.report_number
    if number is None:
        for text in (draft.title, draft.body[:2000]):
            if m := _REPORT.search(normalise_text(text)):
                number = int(m.group(1))
                break
    if number is not None and not 0 < number <= MAX_REPORT_NUMBER:
        raise ItemError(draft.external_id, f"report number {number} is out of range "
                                           f"(1–{MAX_REPORT_NUMBER})")
    return number


def _windows(draft: Draft, status: NoticeStatus, ref: datetime) -> tuple[TimeWindow, ...]:
    if draft.starts_at is not None:
        return (TimeWindow(draft.starts_at, draft.ends_at),)
    when = draft.when_text or f"{draft.title}\n{draft.body}"
    found = [TimeWindow(w.start, w.end, w.reserve) for w in parse_windows(when, ref)]
    if draft.remarks:  # 備考: 「予備日：12月5日(土) 0:00～6:00」, a postponement's new date
        extra = [TimeWindow(w.start, w.end, w.reserve)
                 for w in parse_windows(draft.remarks, ref)]
        if status == NoticeStatus.POSTPONED and extra:
            found = [w for w in extra if not w.reserve] or found
            extra = [w for w in extra if w.reserve]
        found += [w for w in extra if w.reserve and w not in found]
    if found and draft.recovered_text and status == NoticeStatus.RECOVERED:
        recovered = parse_datetime(draft.recovered_text, ref)
        if recovered is not None and recovered > found[0].start:
            found[0] = TimeWindow(found[0].start, recovered)
    return tuple(found)


@dataclass(frozen=True)
class Normalised:
    """A notice, and whether its status was stated (else the default was taken)."""

    notice: Notice
    status_stated: bool
    unrecognised: tuple[str, ...] = ()


def normalise_item(draft: Draft, *, source: str, carrier: str, ref: datetime,
                   base_url: str | None = None) -> Normalised:
    """A Notice, or ItemError naming what is missing or out of range."""
    external_id = _clean(draft.external_id)
    if not external_id:
        raise ItemError(draft.title[:40] or "?", "no id, link or guid to identify the item")
    if len(external_id) > MAX_ID:
        raise ItemError(external_id[:80] + "…", f"id longer than {MAX_ID} characters")
    title, _tags = split_title(draft.title[:MAX_TITLE * 5])
    if not title:
        raise ItemError(external_id, "no title")
    title = _cap(title)
    kind = judge_kind(draft)
    judgement = judge_status(draft, kind)
    default = NoticeStatus.OCCURRED if kind == NoticeKind.FAILURE else NoticeStatus.SCHEDULED
    status = judgement.status or default
    windows = _windows(draft, status, draft.published or ref)
    planned = [w for w in windows if not w.reserve] or list(windows)
    notice = Notice(
        source=source, external_id=external_id, carrier=carrier, kind=kind, status=status,
        title=title, body=_clean_body(draft.body),
        starts_at=planned[0].start if planned else None,
        ends_at=planned[0].end if planned else None,
        prefectures=find_prefectures(draft), localities=find_localities(draft.area_text),
        services=find_services(draft), url=canonical_url(draft.url, base_url),
        report_number=find_report_number(draft),
        windows=tuple(windows) if len(windows) > 1 else (),
        published_at=draft.published or (parse_datetime(draft.published_text, ref)
                                         if draft.published_text else None),
    )
    return Normalised(notice, judgement.status is not None, judgement.unrecognised)


def normalise(draft: Draft, *, source: str, carrier: str, ref: datetime,
              base_url: str | None = None) -> Notice:
    """A Notice, or ItemError naming what is missing."""
    return normalise_item(draft, source=source, carrier=carrier, ref=ref,
                          base_url=base_url).notice


# --------------------------------------------------------------------------- revisions


def _meaningful(n: Notice) -> dict[str, object]:
    """What a reader would notice. Sorted lists: a reordered area list is no change."""
    return {
        "kind": str(n.kind), "status": str(n.status), "title": n.title, "body": n.body,
        # In JST whatever the source: a time read back from the store compares equal.
        "starts_at": n.starts_at.astimezone(JST).isoformat() if n.starts_at else None,
        "ends_at": n.ends_at.astimezone(JST).isoformat() if n.ends_at else None,
        "prefectures": sorted(n.prefectures), "localities": sorted(n.localities),
        "services": sorted(n.services), "report_number": n.report_number,
        "carrier": n.carrier, "windows": [w.to_json() for w in n.windows],
    }


def revision_of(n: Notice) -> str:
    """Hash of the normalised content; the URL (tracking already stripped) and NTT's
    stated time count too, so a moved detail page or a re-dated one is recorded, silently
    (see `classify`). The time is hashed only when stated: a source that states none
    keeps the revisions it had."""
    data = {**_meaningful(n), "url": n.url,
            **({"published_at": n.published_at.astimezone(JST).isoformat()}
               if n.published_at else {})}
    blob = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_STILL_OPEN = frozenset({NoticeStatus.OCCURRED, NoticeStatus.SCHEDULED,
                         NoticeStatus.IN_PROGRESS})


def classify(old: Notice | None, new: Notice) -> Change:
    """What a new revision means to a reader."""
    if old is None:
        return Change.NEW
    if _meaningful(old) == _meaningful(new):
        return Change.SILENT
    if new.status == NoticeStatus.WITHDRAWN:
        return Change.WITHDRAW
    if old.status == NoticeStatus.WITHDRAWN and new.status in _STILL_OPEN and \
            _meaningful(replace(old, status=new.status)) == _meaningful(new):
        # Back on its page as it was, still open: nothing for a reader. Back with an end
        # (回復, 完了, 中止) or a partial recovery is news, classified below.
        return Change.RESTORE
    if new.status != old.status:
        transitions = {NoticeStatus.CANCELLED: Change.CANCEL,
                       NoticeStatus.COMPLETED: Change.COMPLETE,
                       NoticeStatus.RECOVERED: Change.RECOVER}
        if new.status in transitions:
            return transitions[new.status]
    return Change.UPDATE
