"""PostgreSQL (issue 16, its first piece): `jpixd migrate` prepares a real PostgreSQL,
started by the tests, once however many hosts run it at the same time; the rest of
a newer database is refused by every command that opens it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from jpixd.store.pg import migrate as pg_migrate
from tests.conftest import base_mapping, toml_dumps
from tests.pgserver import needs_postgres, postgres_server, postgres_url  # noqa: F401

pytestmark = needs_postgres


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "jpixd.toml"
    path.write_text(toml_dumps(base_mapping(tmp_path, database_url=url)), encoding="utf-8")
    return path


async def _jpixd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "jpixd", *args],
                                   cwd=cwd, capture_output=True, text=True, timeout=120,
                                   check=False)


async def test_migrate_prepares_postgres_once_even_from_three_hosts(
        tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    cfg = _config(tmp_path, postgres_url)
    runs = await asyncio.gather(*(_jpixd("migrate", "--config", str(cfg), cwd=tmp_path)
                                  for _ in range(3)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    # The others found it done.
    versions = [m.version for m in pg_migrate.bundled()]
    assert sum(f"(applied {versions})" in r.stdout for r in runs) == 1
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(versions)
        tables = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        assert {"notices", "notice_revisions", "notice_keys", "subscribers", "deliveries",
                "mail_events", "suppressions", "tickets", "ticket_comments", "quarantine",
                "control", "archive_outbox", "shadow_mail", "subscriber_changes",
                "source_state", "hosts", "console_logouts"} <= tables
        types = {(r["column_name"]): r["data_type"] for r in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'deliveries'")}
        assert types["not_before"] == "timestamp with time zone"
        assert types["lease_until"] == "timestamp with time zone"
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO notices (source, external_id, carrier, kind, "
                               "status, title, revision, first_seen, last_changed, "
                               "last_seen) VALUES ('s', 'e', 'north', 'failure', 'occurred', "
                               "'t', 'r', now(), now(), now())")
    finally:
        await conn.close()
    again = await _jpixd("migrate", "--config", str(cfg), cwd=tmp_path)
    assert again.returncode == 0 and \
        f"at schema version {pg_migrate.bundled()[-1].version}" in again.stdout
    assert "applied" not in again.stdout


async def test_a_newer_database_is_refused_by_every_command_that_opens_it(
        tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    cfg = _config(tmp_path, postgres_url)
    assert (await _jpixd("migrate", "--config", str(cfg), cwd=tmp_path)).returncode == 0
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                           "VALUES (99, 'future', now())")
    finally:
        await conn.close()
    newer = await _jpixd("migrate", "--config", str(cfg), cwd=tmp_path)
    assert newer.returncode == 2 and "newer than this program" in newer.stderr
    # Every command that opens the store says so, the same way (exit 2, the reason),
    # and changes nothing.
    for command in (["run"], ["subscribers", "export"], ["shadow", "report"]):
        out = await _jpixd(*command, "--config", str(cfg), cwd=tmp_path)
        assert out.returncode == 2 and "newer than this program" in out.stderr, (
            command, out.stderr)


def test_a_password_in_the_url_is_refused(tmp_path: Path) -> None:
    from jpixd.config import ConfigError, load_mapping

    with pytest.raises(ConfigError, match="database_url: has a password in it"):
        load_mapping(base_mapping(tmp_path, database_url="postgresql://u:secret@db/jpixd"),
                     base_dir=tmp_path, env={})
