"""Numbered schema migrations (`NNNN_name.sql`), each applied once in its own transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import aiosqlite

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


# A migration that only adds (tables, indexes, nullable columns or ones with a default)
# says so in its comments: a release that does not know it can still run on the database
# it made, so rolling a release back needs no restore (README: Deploying).
OLDER_OK = "-- older releases: compatible"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def older_ok(self) -> bool:
        return OLDER_OK in self.sql


def refusal(have: int, latest: int, breaking_above: int) -> str | None:
    """Why a program that knows migrations up to `latest` must not run on a database at
    `have`, of whose newer migrations `breaking_above` are not compatible with older
    releases; None when it may."""
    if have <= latest or breaking_above == 0:
        return None
    return (f"the database is at schema version {have}, newer than this program knows "
            f"({latest}), and {breaking_above} of its newer migrations change what this "
            "program relies on: refusing to run an older jpixd on it")


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
    async with db.execute("PRAGMA table_info(schema_migrations)") as cur:
        columns = {row[1] for row in await cur.fetchall()}
    if "older_ok" not in columns:  # recorded from 0.2 on; earlier ones count as breaking
        await db.execute("ALTER TABLE schema_migrations ADD COLUMN older_ok INTEGER NOT NULL "
                         "DEFAULT 0")
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _breaking_above(db: aiosqlite.Connection, latest: int) -> int:
    async with db.execute("SELECT COUNT(*) FROM schema_migrations WHERE version > ? "
                          "AND NOT older_ok", (latest,)) as cur:
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
        why = refusal(have, latest, await _breaking_above(db, latest))
        if why is not None:
            raise SchemaTooNew(why)
        return []  # a newer release's additions: this one runs beside them
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
                "INSERT INTO schema_migrations (version, name, applied_at, older_ok) "
                "VALUES (?, ?, ?, ?)", (mig.version, mig.name, now_iso, int(mig.older_ok)),
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        applied.append(mig.version)
    return applied
