"""One module per source kind: bytes (decoded) in, Drafts and per-item errors out.

A parser raises ParseError only when the whole body is unusable; a bad item becomes an
ItemError and the other items go on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from jpixd.feeds.normalise import Draft, ItemError


@dataclass
class ParseResult:
    drafts: list[Draft] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    # Notice-like text that no part of the parser read (a section in an unknown layout).
    warnings: list[str] = field(default_factory=list)
    # The page says it has nothing (「故障情報はありません」) in a section of its own.
    says_empty: bool = False


def list_fingerprint(draft: Draft) -> str:
    """What a list says about an item whose fields are on a linked page (NTT West's RSS,
    NTT East's report links): when it changes, the page is fetched again."""
    seed = "|".join([draft.title, draft.body, draft.url or "",
                     draft.published.isoformat() if draft.published else ""])
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()
