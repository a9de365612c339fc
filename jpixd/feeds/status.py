"""Whether a notice has recovered, finished, been cancelled or postponed — read the way
a careful person reads NTT's sentences. Pure.

A false 【回復】 misleads every ISP NOC at once, so the rules are one-sided: a status
that ends a notice (recovered, completed, cancelled) is claimed only from an affirmative,
complete statement (「回復しました」, 「→回復」, a status cell that says 回復), never from
a sentence that merely mentions recovery (「復旧の見通しは立っておりません」, 「回復次第
お知らせします」, 「早期復旧に努めております」, 「復旧にあたって」). A recovery limited to a
part (「北海道エリアは回復しました。その他エリアは復旧作業中です。」, some services →回復 and
others not) is `partially_recovered`. When no text says anything plain, the judgement
is None: the caller keeps the status it had, and the phrases that mentioned recovery
without being understood are returned so that they can be logged and counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from jpixd.model import NoticeKind, NoticeStatus

_RECOVERY_WORD = re.compile(r"回復|復旧")
# Affirmative, finished recoveries. 「回復しましたら」 (when it has) and 「回復していない」
# are excluded by the endings written out here.
_AFFIRM = re.compile(
    r"(?:回復|復旧)(?:(?:いた|致)?しました(?!ら)|して(?:おり|い)ます"
    r"|(?:済み?|完了)(?![みの]{0,2}(?:見込|予定|次第|時期|目途|めど|見通))"
    r"|を確認(?:しました|いたしました|済))"
    r"|→ ?(?:全て|すべて|全面)?(?:回復|復旧)(?!の?見|予定|作業|次第|に向|中)"
    r"|[【(\[](?:回復|復旧|全面回復|全面復旧)(?:済み?)?[】)\]]"
    r"|(?:全て|すべて|全面的に)(?:回復|復旧)(?:しました|いたしました)")
# Recovery talked about but not (yet) happened.
_NOT_YET = re.compile(
    r"(?:回復|復旧)(?:の|に|を|は)?(?:見込|見通|目途|めど|時期|予定|未定|作業|次第|に努め|努め|に向け"
    r"|向け|にあたって|にあたり|あたって|対応|待ち|には|中|までに|まで|に時間|時間|にしばらく"
    r"|に数|していな|しておりませ|していませ)"
    r"|(?:回復|復旧)(?:いた|致)?(?:しましたら|しだい|した際|後に)"
    r"|(?:回復|復旧)(?:完了|済み?)の?(?:見込|予定|時期|目途|めど|見通)"
    r"|未回復|未復旧|早期(?:の)?(?:回復|復旧)")
_ONGOING = re.compile(
    r"発生中|発生して(?:おり|い)ます|(?:影響|状況|状態)が(?:継続|続いて)"
    r"|(?:しづらい|できない|いただけない|にくい)(?:状況|状態)(?:です|が続|となって(?:おり|い)ます"
    r"|にな(?:って)?(?:おり|い)ます)"
    r"|(?:復旧|回復|故障|障害)?(?:作業|対応)中"
    # 「引き続きご利用いただけない」, not the polite 「引き続きよろしくお願いいたします」.
    r"|引き続き(?:ご利用|作業|対応|調査|復旧|影響|故障|障害|発生)")
# A sentence that recovers only a part.
_PARTIAL_SCOPE = re.compile(
    r"一部|のみ|うち|については|エリアは|地域は|[都道府県市区町村]は|その他|以外|残り|順次")
_CLAUSE = re.compile(r"が[、,]|ので[、,]|ため[、,]")
_SERVICE_LINE = re.compile(r"回線|→")
_SENTENCE = re.compile(r"[。\n]+")

# Construction. A word followed by one of these is a possibility, not a fact.
_MODAL = r"(?![^。]{0,12}?(?:場合|可能性|こともあ|ことがあ|恐れ|おそれ))"
_CANCEL = re.compile(r"(?:中止|取りやめ|取り止め|取止め|見合わせ)" + _MODAL)
# NFKC has turned ①② into 1 2 by now: 「②は中止、①は予定どおり」 is caught by its 予定どおり.
_PARTIAL_CANCEL = re.compile(r"一部|のうち|予定どおり|予定通り|以外|引き続き|のみ中止")
_POSTPONE = re.compile(r"延期" + _MODAL)
_COMPLETE = re.compile(
    r"(?:完了|終了|実施済)(?!予定|見込|時刻|日時|時間|後|次第|の予定|する|します|いたします|まで|に向|の際|時)"
    r"(?:しました|いたしました|致しました|済み?|です|となりました)?"
    + _MODAL)
_IN_PROGRESS = re.compile(r"実施中|作業中|工事中")
_SCHEDULED = re.compile(r"予定|実施します|実施いたします|お知らせ|行います|予告")


@dataclass(frozen=True)
class Judgement:
    status: NoticeStatus | None  # None: nothing said plainly; keep the status it had
    field: str = ""  # where the deciding words were
    unrecognised: tuple[str, ...] = ()  # mentions of recovery we could not place


def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKC", text)
    return re.sub(r"[ \t\u3000]+", "", t).replace("→", "→")


def _failure(text: str) -> tuple[NoticeStatus | None, list[str]]:
    sentences = [s for s in _SENTENCE.split(text) if s]
    affirmed = [s for s in sentences if _AFFIRM.search(s)]
    not_yet = [s for s in sentences if s not in affirmed and (_NOT_YET.search(s)
                                                              or _ONGOING.search(s))]
    if affirmed:
        if not_yet or any(_limited(s) or _but(s) for s in affirmed) or \
                _services_partly(sentences):
            return NoticeStatus.PARTIALLY_RECOVERED, []
        return NoticeStatus.RECOVERED, []
    if not_yet or _ONGOING.search(text):
        return NoticeStatus.OCCURRED, []
    if len(text) <= 8 and text in ("回復", "復旧", "回復済", "回復済み", "復旧済", "復旧済み"):
        return NoticeStatus.RECOVERED, []  # a status cell
    if len(text) <= 12 and ("発生" in text or "故障" in text or "障害" in text):
        return NoticeStatus.OCCURRED, []
    unplaced = [s[:80] for s in sentences if _RECOVERY_WORD.search(s)]
    return None, unplaced


def _limited(sentence: str) -> bool:
    """The clause that says 回復しました names a part (「北海道エリアは回復しました」); an
    earlier clause (「一部エリアでご利用しづらい状況でしたが、回復しました」) does not count."""
    m = _AFFIRM.search(sentence)
    assert m is not None
    clause = _CLAUSE.split(sentence[:m.start()])[-1]
    return bool(_PARTIAL_SCOPE.search(clause))


def _but(sentence: str) -> bool:
    """「回復しましたが、その他のエリアでは引き続き…」: the same sentence goes on to say
    that something has not recovered."""
    ends = [m.end() for m in _AFFIRM.finditer(sentence)]
    rest = sentence[max(ends, default=0):]
    return bool(_NOT_YET.search(rest) or _ONGOING.search(rest) or
                re.search(r"一部|その他|残り|未だ|まだ", rest))


def _services_partly(sentences: Sequence[str]) -> bool:
    """Service lines (「ひかり電話:約1万回線→回復」) of which some have not recovered."""
    lines = [s for s in sentences if _SERVICE_LINE.search(s) and ":" in s]
    if len(lines) < 2:
        return False
    recovered = [s for s in lines if _AFFIRM.search(s)]
    return 0 < len(recovered) < len(lines)


def _construction(text: str) -> NoticeStatus | None:
    if _CANCEL.search(text):
        if not _PARTIAL_CANCEL.search(text):
            return NoticeStatus.CANCELLED
        return NoticeStatus.SCHEDULED  # part of the work goes ahead: an update, not an end
    if _POSTPONE.search(text):
        return NoticeStatus.POSTPONED
    if _COMPLETE.search(text):
        return NoticeStatus.COMPLETED
    if _IN_PROGRESS.search(text):
        return NoticeStatus.IN_PROGRESS
    if _SCHEDULED.search(text):
        return NoticeStatus.SCHEDULED
    return None


_STRONG = frozenset({NoticeStatus.CANCELLED, NoticeStatus.POSTPONED, NoticeStatus.COMPLETED,
                     NoticeStatus.IN_PROGRESS})


def judge(kind: NoticeKind, fields: Sequence[tuple[str, str]]) -> Judgement:
    """`fields` as (name, text), most specific first: a status cell, 備考, 措置状況, a
    回復日時 cell, the title's own tags, the title, the body.

    Failures: the first field that says anything plain decides (a status cell that says
    発生中 is not overruled by an older sentence in the body). Construction: a change
    of plan (中止, 延期, 完了, 実施中) in any field beats a plain 予定 elsewhere, since a
    備考 column is where NTT writes it while the 状況 cell may still say 予定.
    """
    unrecognised: list[str] = []
    weak: Judgement | None = None
    decided: Judgement | None = None
    for name, raw in fields:
        text = _norm(raw)
        if not text:
            continue
        if kind == NoticeKind.FAILURE:
            status, unplaced = _failure(text)
            unrecognised.extend(unplaced)
            if decided is not None:
                # A more specific field said "not yet"; a later one (service lines
                # 「→回復」) says some of it is back: partly, never wholly, recovered.
                if status in (NoticeStatus.RECOVERED, NoticeStatus.PARTIALLY_RECOVERED):
                    return Judgement(NoticeStatus.PARTIALLY_RECOVERED, name, ())
                continue
            if status == NoticeStatus.OCCURRED:
                decided = Judgement(status, name, ())
            elif status is not None:
                return Judgement(status, name, tuple(unrecognised))
            continue
        found = _construction(text)
        if found in _STRONG:
            return Judgement(found, name, ())
        if found is not None and weak is None:
            weak = Judgement(found, name, ())
    if decided is not None:
        return decided
    if weak is not None:
        return weak
    return Judgement(None, "", tuple(dict.fromkeys(unrecognised)))
