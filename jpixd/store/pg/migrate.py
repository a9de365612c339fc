"""PostgreSQL migrations: numbered SQL files applied in order, each in its own
transaction, under an advisory lock so that hosts starting together never apply one
twice (the second waits, then finds it done)."""

from __future__ import annotations

import re
from datetime import datetime
from importlib import resources
from typing import Any

from jpixd.store import migrate as sqlite_migrate

Migration = sqlite_migrate.Migration
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
# pg_advisory_xact_lock's key: "jpixd" as a number, the same on every host.
LOCK_KEY = int.from_bytes(b"jpixdmig", "big") >> 1


def bundled() -> list[Migration]:
    out = []
    for entry in resources.files("jpixd.store.pg.migrations").iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda mig: mig.version)
    if [m.version for m in out] != list(range(1, len(out) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[m.version for m in out]}")
    return out


async def apply(conn: Any, now: datetime, migrations: list[Migration] | None = None
                ) -> list[int]:
    """Apply what is missing; return the versions applied. `conn` is an asyncpg
    connection; a database newer than this program is refused."""
    chosen = bundled() if migrations is None else migrations
    latest = chosen[-1].version if chosen else 0
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer "
                           "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)")
        # Recorded from 0.2 on; earlier migrations count as breaking (SQLite's the same).
        await conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS older_ok "
                           "boolean NOT NULL DEFAULT false")
        have = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        if have > latest:
            why = sqlite_migrate.refusal(have, latest, await conn.fetchval(
                "SELECT COUNT(*) FROM schema_migrations WHERE version > $1 AND NOT older_ok",
                latest))
            if why is not None:
                raise sqlite_migrate.SchemaTooNew(why)
            return []  # a newer release's additions: this one runs beside them
        for mig in chosen:
            if mig.version <= have:
                continue
            async with conn.transaction():  # a savepoint: one migration whole, or none
                await conn.execute(mig.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name, applied_at, "
                                   "older_ok) VALUES ($1, $2, $3, $4)", mig.version, mig.name,
                                   now, sqlite_migrate.OLDER_OK in mig.sql)
            applied.append(mig.version)
    return applied


async def current_version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))
