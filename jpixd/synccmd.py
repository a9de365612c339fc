"""`jpixd subscribers sync FILE.csv`: the old system's whole list applied before the
cut-over (rules: jpixd.sync). Prints what it did, or with --dry-run what it would do;
exit 2, and nothing changed, for a bad file or more removals than allowed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from jpixd.config import Config
from jpixd.model import Subscriber

EXIT_OK, EXIT_CONFIG = 0, 2


def run_sync(cfg: Config, path: Path, *, dry_run: bool, allow_removals: int | None) -> int:
    from jpixd.cliargs import csv_rows

    parsed = csv_rows(path, "synced")
    if parsed is None:
        return EXIT_CONFIG
    if any(r.channels is not None for r in parsed):
        print(f"jpixd: nothing synced: {path} has a channels column; the old system has "
              "no channels (use `jpixd subscribers import` for them)", file=sys.stderr)
        return EXIT_CONFIG
    rows = [(r.subscriber, r.columns) for r in parsed]
    return asyncio.run(_sync(cfg, path, rows, dry_run, allow_removals))


async def _sync(cfg: Config, path: Path, rows: list[tuple[Subscriber, frozenset[str]]],
                dry_run: bool, allow_removals: int | None) -> int:
    from jpixd.app import open_store
    from jpixd.model import utcnow
    from jpixd.store.subscribers import SyncRefused

    store = await open_store(cfg, utcnow)
    try:
        result = await store.sync_subscribers(rows, utcnow(), dry_run=dry_run,
                                              allowed_removals=allow_removals)
    except SyncRefused as exc:
        print(f"jpixd: nothing synced: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        await store.close()
    imported = result.imported
    if dry_run:
        for line in imported.diffs:
            print(f"  {line}")
        for email in result.removed:
            print(f"  {email}: unsubscribed (not in the file)")
    note = " (dry run: nothing written)" if dry_run else ""
    print(f"{path}: {len(rows)} rows: {imported.created} added, {imported.updated} changed, "
          f"{len(result.removed)} unsubscribed (not in the file), {imported.kept} opt-outs "
          f"kept, {len(result.kept_here)} signed up here and kept, {imported.unchanged} "
          f"unchanged{note}")
    return EXIT_OK
