"""A real PostgreSQL for the tests, started from Debian's binaries (no Docker): `initdb`
into a temporary folder, `pg_ctl` on a loopback port, stopped at the end of the session.
`initdb` refuses to run as root, so as root it runs as the `postgres` user."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(
        f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    return found


INITDB, PG_CTL = _bin("initdb"), _bin("pg_ctl")
needs_postgres = pytest.mark.skipif(
    INITDB is None or PG_CTL is None,
    reason="PostgreSQL's binaries are not installed (scripts/install-test-tools.sh installs "
           "the Debian package postgresql as root)")


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


DATA_DIRS: dict[str, Path] = {}  # a running server's URL → its data folder


def restart_postgres(url: str) -> None:
    """Stop the server (every session ends, as in a failover) and start it again."""
    data = DATA_DIRS[url]
    assert PG_CTL is not None
    # Its log to the file again (a restart forgets -l), and no pipe of ours held open by
    # the new server, which would keep this call waiting for the pipe to close.
    subprocess.run(_as_owner([PG_CTL, "-D", str(data), "-l", str(data.parent / "log"),
                              "-m", "fast", "-w", "-t", "60", "restart"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server; its base URL (`postgresql://jpixd@127.0.0.1:PORT`) until the block
    ends, then stop it and remove its folder (also used by `python -m bench postgres`)."""
    if INITDB is None or PG_CTL is None:
        raise RuntimeError("PostgreSQL's binaries are not installed")
    # Not under pytest's temporary folder: that is root's alone, and the server runs as
    # `postgres` when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="jpixd-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    from tests.conftest import free_port

    port = free_port()
    subprocess.run(_as_owner([INITDB, "-D", str(data), "-A", "trust", "-U", "jpixd",
                              "-E", "UTF8", "--locale=C", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c full_page_writes=off -c synchronous_commit=off")
    subprocess.run(_as_owner([PG_CTL, "-D", str(data), "-l", str(root / "log"), "-o", options,
                              "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=120)
    url = f"postgresql://jpixd@127.0.0.1:{port}"
    DATA_DIRS[url] = data
    try:
        yield url
    finally:
        DATA_DIRS.pop(url, None)
        subprocess.run(_as_owner([PG_CTL, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)  # nothing left behind


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running server for the session; its base URL."""
    if INITDB is None or PG_CTL is None:
        pytest.skip("PostgreSQL's binaries are not installed")
    with running_postgres() as url:
        yield url


async def admin(server: str, sql: str, *, database: str = "postgres") -> None:
    """One statement as the server's owner: on its maintenance database (CREATE / DROP
    DATABASE), or on `database` (the benchmark's ANALYZE)."""
    import asyncpg

    conn = await asyncpg.connect(f"{server}/{database}")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(server: str, *, template: str | None = None,
                          name: str | None = None) -> str:
    """A new database (empty, or a copy of `template`); its URL."""
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    await admin(server, f'CREATE DATABASE "{name}"{copy}')
    return f"{server}/{name}"


async def drop_database(url: str) -> None:
    server, name = url.rsplit("/", 1)
    await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty database of its own for one test; dropped afterwards."""
    url = await create_database(postgres_server)
    try:
        yield url
    finally:
        await drop_database(url)


TEMPLATE = "jpixd_template"


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> str:
    """A database migrated once for the session; each test's database is a copy of it
    (CREATE DATABASE … TEMPLATE: a file copy, faster than migrating every time)."""
    import asyncio
    from datetime import UTC, datetime

    import asyncpg

    from jpixd.store.pg import migrate as pg_migrate

    async def make() -> None:
        url = await create_database(postgres_server, name=TEMPLATE)
        conn = await asyncpg.connect(url)
        try:
            await pg_migrate.apply(conn, datetime(2026, 12, 1, tzinfo=UTC))
        finally:
            await conn.close()

    asyncio.run(make())
    return TEMPLATE


@pytest.fixture
def postgres_db(postgres_server: str, postgres_template: str) -> Iterator[str]:
    """A migrated database of its own for one test (a copy of the template); dropped
    afterwards. Sync (its own short event loops), so that a sync fixture can ask for it
    whatever the test's loop is doing."""
    import asyncio

    url = asyncio.run(create_database(postgres_server, template=postgres_template))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))
