"""A subscriber CSV's `channels` column, applied after its subscribers (the CLI's
`subscribers import` and the console's upload): each listed subscriber's channels made
what the file says, in one transaction of their own (jpixd.store.channels)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jpixd.channels.manage import new_secret
from jpixd.records import ImportDiff
from jpixd.store import AnyStore
from jpixd.subscribers import CsvRow


async def import_channels(store: AnyStore, rows: Sequence[CsvRow], actor: str, *,
                          dry_run: bool, now: datetime) -> list[ImportDiff]:
    """What changed, one line each (a new webhook's signing key said once); nothing for
    a file without the column. ChannelInvalid: a shown URL that names no channel."""
    wanted = [(r.subscriber.email, r.channels) for r in rows if r.channels is not None]
    if not wanted:
        return []
    return await store.import_channels(wanted, now, actor=actor, dry_run=dry_run,
                                       secret=new_secret)
