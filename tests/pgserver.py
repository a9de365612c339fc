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
from pathlib import Path

import pytest

from tests.conftest import free_port


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running server; its base URL (`postgresql://jpixd@127.0.0.1:PORT`)."""
    if INITDB is None or PG_CTL is None:
        pytest.skip("PostgreSQL's binaries are not installed")
    # Not under pytest's temporary folder: that is root's alone, and the server runs as
    # `postgres` when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="jpixd-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_owner([INITDB, "-D", str(data), "-A", "trust", "-U", "jpixd",
                              "-E", "UTF8", "--locale=C", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c full_page_writes=off -c synchronous_commit=off")
    subprocess.run(_as_owner([PG_CTL, "-D", str(data), "-l", str(root / "log"), "-o", options,
                              "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://jpixd@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([PG_CTL, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)  # nothing left behind


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty database of its own for one test; dropped afterwards."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{postgres_server}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{postgres_server}/{name}"
    finally:
        admin = await asyncpg.connect(f"{postgres_server}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
