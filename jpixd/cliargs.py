"""What the commands read from their arguments and files the same way: a time with a
zone (`--since`, `--changed-since`) and a subscriber CSV. Each says what is wrong, on
standard error, for a person at a terminal; the command then exits 2, having changed
nothing."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from jpixd.subscribers import CsvRow


def aware_time(option: str, text: str | None) -> tuple[bool, datetime | None]:
    """(ok, the time or None when not given); ok is False, and the reason printed, for a
    text that is not an ISO 8601 time with a zone."""
    if text is None:
        return True, None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        print(f"jpixd: {option}: {text!r} is not an ISO 8601 time with a zone "
              "(e.g. 2026-12-20T03:00+09:00)", file=sys.stderr)
        return False, None
    return True, when


def csv_rows(path: Path, verb: str, *, allow_http: bool = False) -> list[CsvRow] | None:
    """The file's rows, or None with what is wrong printed (every bad row by its line
    number). `allow_http`: [channels] allow_http, for a `channels` column."""
    from jpixd.subscribers import parse_csv

    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"jpixd: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    rows, errors = parse_csv(data, allow_http=allow_http)
    if errors:
        for line in errors:
            print(f"{path}: {line}", file=sys.stderr)
        print(f"jpixd: nothing {verb}: {len(errors)} error(s) in {path}", file=sys.stderr)
        return None
    return rows
