"""The `json` source kind: {"notices": [{"id", "kind", "status", "title", "body",
"starts_at", "ends_at", "prefectures", "localities", "services", "url",
"report_number"}]} with ISO 8601 times (SPEC §4)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jpixd.feeds.errors import ParseError
from jpixd.feeds.jptime import MAX_YEAR, MIN_YEAR
from jpixd.feeds.normalise import Draft, ItemError
from jpixd.feeds.parsers import ParseResult
from jpixd.model import JST


def _time(item: dict[str, Any], key: str, ref: str) -> datetime | None:
    value = item.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ItemError(ref, f"{key} must be an ISO 8601 string")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ItemError(ref, f"{key}: {value!r} is not an ISO 8601 time") from None
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise ItemError(ref, f"{key}: year {dt.year} is out of range ({MIN_YEAR}–{MAX_YEAR})")
    dt = dt if dt.tzinfo else dt.replace(tzinfo=JST)  # the feed is Japanese: JST
    try:
        dt.astimezone(JST)  # 9999-12-31T23:59-23:59 is past the last representable day
    except OverflowError:
        raise ItemError(ref, f"{key}: {value!r} is out of range") from None
    return dt


def _strings(item: dict[str, Any], key: str, ref: str) -> tuple[str, ...]:
    value = item.get(key) or []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ItemError(ref, f"{key} must be a list of strings")
    return tuple(value)


def _draft(item: Any, index: int) -> Draft:
    if not isinstance(item, dict):
        raise ItemError(f"notices[{index}]", "is not an object")
    raw_id = item.get("id")
    if raw_id in (None, "") or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ItemError(f"notices[{index}]", "has no id")
    if isinstance(raw_id, int) and not 0 <= raw_id < 2**63:
        raise ItemError(f"notices[{index}]", "id is out of range")
    ref = str(raw_id)
    title = item.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ItemError(ref, "has no title")
    report = item.get("report_number")
    if report is not None and (isinstance(report, bool) or not isinstance(report, int)):
        raise ItemError(ref, "report_number must be a whole number")
    for key in ("kind", "status", "body", "url"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise ItemError(ref, f"{key} must be a string")
    return Draft(
        external_id=ref, title=title, body=item.get("body") or "", url=item.get("url"),
        kind=item.get("kind"), status=item.get("status"),
        starts_at=_time(item, "starts_at", ref), ends_at=_time(item, "ends_at", ref),
        prefectures=_strings(item, "prefectures", ref),
        area_text="、".join(_strings(item, "localities", ref)),
        services=_strings(item, "services", ref), report_number=report,
        published=_time(item, "published", ref),
    )


def parse(text: str, *, url: str) -> ParseResult:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # 4,300-digit integers, 100k-deep nesting
        raise ParseError(f"not JSON we can read: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("notices"), list):
        raise ParseError('not a notices document: {"notices": [...]} expected')
    result = ParseResult()
    for i, item in enumerate(doc["notices"]):
        try:
            result.drafts.append(_draft(item, i))
        except ItemError as err:
            err.payload = json.dumps(item, ensure_ascii=False, default=str)
            result.errors.append(err)
    return result
