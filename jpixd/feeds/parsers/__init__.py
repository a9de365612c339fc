"""One module per source kind: bytes (decoded) in, Drafts and per-item errors out.

A parser raises ParseError only when the whole body is unusable; a bad item becomes an
ItemError and the other items go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jpixd.feeds.normalise import Draft, ItemError


@dataclass
class ParseResult:
    drafts: list[Draft] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
