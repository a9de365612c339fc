"""The services a subscriber chooses from, in the words NTT uses. Pure.

Subscribers do not know NTT's exact service names (reader review: サービス was free text),
so the forms offer these; each choice is stored as the words that find it in a notice
(jpixd.fanout.services_match: a wanted word contained in an offered service). NTT East
writes 「光アクセスサービス（フレッツ光等）」 where NTT West writes 「フレッツ光ネクスト」, so
the optical choice is stored as both 「フレッツ光」 and 「光アクセス」: a subscriber who
ticks it misses neither. Anything else is still typed, as the exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    key: str  # the form's value
    label: str  # what the form says
    words: tuple[str, ...]  # what is stored, and matched in a notice's services


CHOICES: tuple[Choice, ...] = (
    Choice("optical", "フレッツ光（光アクセスサービス）",
           ("フレッツ光", "光アクセス")),
    Choice("hikari-denwa", "ひかり電話", ("ひかり電話",)),
    Choice("fixed-line", "加入電話・INSネット", ("加入電話", "INSネット")),
    Choice("vpn", "フレッツ・VPN（ワイド・プライオ）", ("フレッツ・VPN",)),
    Choice("ether", "ビジネスイーサ ワイド", ("ビジネスイーサ",)),
)
_BY_KEY = {c.key: c for c in CHOICES}


def stored(chosen: Iterable[str], typed: Sequence[str]) -> list[str]:
    """The services to store: the chosen ones' words, then what was typed, each once.
    An unknown key is ignored (a form posts only the keys it shows)."""
    out: list[str] = []
    for key in chosen:
        choice = _BY_KEY.get(key)
        out.extend(choice.words if choice else ())
    out.extend(t.strip() for t in typed if t.strip())
    return list(dict.fromkeys(out))


def shown(services: Sequence[str]) -> tuple[list[str], list[str]]:
    """A subscriber's services as the form shows them: (the choices ticked, the rest)."""
    have = set(services)
    ticked = [c for c in CHOICES if set(c.words) <= have]
    covered = {w for c in ticked for w in c.words}
    return [c.key for c in ticked], [s for s in services if s not in covered]
