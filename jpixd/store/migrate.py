"""Numbered schema migrations (`NNNN_name.sql`), each applied once in its own transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import aiosqlite

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled() -> list[Migration]:
    """The migrations shipped in the package, in order."""
    out: list[Migration] = []
    for entry in resources.files("jpixd.store.migrations").iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in out]
    if versions != list(range(1, len(out) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n without gaps: {versions}")
    return out


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (ours contain no ';' inside literals or triggers)."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# A migration that rewrites stored schema text (widening a CHECK) must bump SQLite's
# schema version so that every connection re-reads the schema; the number is only known
# at run time, hence this directive in place of a literal PRAGMA schema_version = N.
_BUMP = "PRAGMA JPIXD_BUMP_SCHEMA_VERSION"


async def _bump_schema_version(db: aiosqlite.Connection) -> None:
    async with db.execute("PRAGMA schema_version") as cur:
        row = await cur.fetchone()
    assert row is not None
    await db.execute(f"PRAGMA schema_version = {int(row[0]) + 1}")


async def current_version(db: aiosqlite.Connection) -> int:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer jpixd: an older one must not run on it
    (either backend)."""


async def apply(db: aiosqlite.Connection, migrations: list[Migration], now_iso: str) -> list[int]:
    """Apply those not yet applied; return their versions. `db` must be in autocommit mode."""
    have = await current_version(db)
    latest = migrations[-1].version if migrations else 0
    if have > latest:
        raise SchemaTooNew(
            f"the database is at schema version {have}, newer than this program knows "
            f"({latest}): refusing to run an older jpixd on it"
        )
    applied: list[int] = []
    for mig in migrations:
        if mig.version <= have:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(mig.sql):
                if stmt.upper() == _BUMP:
                    await _bump_schema_version(db)
                else:
                    await db.execute(stmt)
            await db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (mig.version, mig.name, now_iso),
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        applied.append(mig.version)
    return applied
