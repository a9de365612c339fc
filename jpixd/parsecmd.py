"""`jpixd parse --kind KIND FILE|URL [--now ISO]`: what the parser and normaliser extract
from a saved page, as a short table and as JSON. Detail pages (NTT West's, NTT East's
report links) are read from a file of the same name beside a saved page (or in
`--details DIR`) when there is one, and fetched otherwise."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from jpixd.feeds.charset import decode
from jpixd.feeds.errors import FeedError
from jpixd.feeds.extract import Extraction, extract, table
from jpixd.feeds.fetch import Fetcher
from jpixd.model import JST, utcnow

MAX_BYTES = 5 * 1024 * 1024


def _now(text: str | None) -> datetime | None:
    if text is None:
        return utcnow()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=JST)


def run_parse(kind: str, target: str, now_text: str | None, *, only_json: bool,
              details: Path | None = None) -> int:
    now = _now(now_text)
    if now is None:
        print(f"jpixd parse: --now {now_text!r} is not an ISO 8601 time", file=sys.stderr)
        return 2
    remote = urlsplit(target).scheme in ("http", "https", "file")
    url = target if remote else Path(target).resolve().as_uri()
    beside = details or (None if remote else Path(target).resolve().parent)
    try:
        result = asyncio.run(_parse(kind, url, now, beside))
    except FeedError as exc:
        print(f"jpixd parse: {exc}", file=sys.stderr)
        return 2
    if not only_json:
        print(table(result))
        print()
    print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    return 1 if result.layout_warning else 0


async def _parse(kind: str, url: str, now: datetime, beside: Path | None) -> Extraction:
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session)

        async def load(link: str) -> str:
            name = Path(urlsplit(link).path).name
            if beside is not None and name and (beside / name).is_file():
                return decode((beside / name).read_bytes()[:MAX_BYTES])[0]
            page = await fetcher.fetch(link, limit_seconds=30, max_bytes=MAX_BYTES)
            return decode(page.body, page.charset)[0]

        page = await fetcher.fetch(url, limit_seconds=30, max_bytes=MAX_BYTES)
        text, _ = decode(page.body, page.charset)
        return await extract(kind, text, url=page.final_url or url, now=now, load=load)
