"""Shared fixtures: configs in tmp, a store, an in-process daemon, a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jpixd.app import Daemon
from jpixd.config import Config, load_mapping
from jpixd.loop import Loop
from jpixd.store import AnyStore, Store

# botocore must never wait on an instance-metadata lookup or find real credentials.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")

ADMIN_TOKEN = "test-admin-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent


def _ephemeral_low() -> int:
    """Where the kernel starts handing out ports to `bind(port 0)` (Linux's default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = random.Random()  # the tests' own: a seeded global random must not repeat ports


async def query_plan(path: Path, sql: str, params: Sequence[Any] = ()) -> list[str]:
    """SQLite's plan for a statement on the database at `path`, a step a line ("SEARCH
    deliveries USING INDEX deliveries_due …"): what a test of a hot query's index reads.
    (Times are bound as the store binds them: its adapter is registered on import.)"""
    import aiosqlite

    async with aiosqlite.connect(str(path)) as db, \
            db.execute("EXPLAIN QUERY PLAN " + sql, params) as cur:
        return [str(r[3]) for r in await cur.fetchall()]


def free_port() -> int:
    """A port to put in a config before the server starts, chosen below the kernel's
    ephemeral range: a listener that binds port 0 meanwhile (a daemon's admin listener
    beside its public one) is never given it, as it could be a port-0 probe's."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(10000, low) if low > 11000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            got: int = s.getsockname()[1]
            return got
    raise RuntimeError("no free port below the ephemeral range")


def base_mapping(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A minimal valid config for tests: state in tmp, port 0, token from a file."""
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    data: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "shutdown_timeout": "5s",
        "http": {"listen": "127.0.0.1:0", "admin_token_file": str(token_file)},
        "mail": {"from": "noc@example.jp", "transport": "file",
                 "file": {"dir": str(tmp_path / "outbox")}},
        "logging": {"format": "json", "level": "info"},
    }
    data.update(overrides)
    return data


def on_backend(url: str | None) -> dict[str, Any]:
    """Config settings that put a daemon on the test's database: SQLite's file in the
    state folder (None), or a PostgreSQL database, with a short leader_timeout so that a
    daemon leads its singleton loops soon after start."""
    return {} if url is None else {"database_url": url,
                                   "cluster": {"leader_timeout": "3s"}}


async def jpixd_command(*args: str, cwd: Path,
                        env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m jpixd ARGS` as an operator runs it (no JPIXD_ variable of ours leaking
    in, `env` added): its exit code, stdout and stderr."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JPIXD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jpixd", *args, cwd=cwd, env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    return load_mapping(base_mapping(tmp_path, **overrides), base_dir=tmp_path, env={})


def toml_dumps(data: Mapping[str, Any]) -> str:
    """Enough TOML writing for test configs (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for k, v in data.items():
        if isinstance(v, Mapping):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v, ensure_ascii=False)}")
    for k, t in tables:
        lines.append(f"[{k}]")
        sub = toml_dumps(t).splitlines()
        for ln in sub:
            lines.append(f"[{k}.{ln[1:]}" if ln.startswith("[") and not ln.startswith("[[")
                         else ln)
    for k, items in arrays:
        for item in items:
            lines.append(f"[[{k}]]")
            lines.append(toml_dumps(item))
    return "\n".join(lines) + "\n"


# The feed poller harness (`h`) for every feed test module.
from tests.feedharness import h  # noqa: E402, F401


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# PostgreSQL for the tests that use a store (issue 16), started once per session.
from tests.pgserver import (  # noqa: E402, F401
    INITDB,
    postgres_db,
    postgres_server,
    postgres_template,
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    INITDB is None, reason="PostgreSQL's binaries are not installed"))]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which store the test runs on: every test that takes `store` runs on both."""
    return str(request.param)


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("postgres_db")) if backend == "postgres" else None


async def open_store_at(url: str | None, path: Path) -> AnyStore:
    """PostgreSQL's database at `url`, or else SQLite's file at `path`."""
    if url is not None:
        from jpixd.store.pg.store import PgStore

        return await PgStore.open(url, pool_size=4)
    return await Store.open(path)


@pytest.fixture
async def store(tmp_path: Path, now: datetime, backend_url: str | None
                ) -> AsyncIterator[AnyStore]:
    s = await open_store_at(backend_url, tmp_path / "db" / "jpixd.sqlite3")
    await s.migrate(now)
    try:
        yield s
    finally:
        await s.close()


async def open_backend(tmp_path: Path, url: str | None) -> AnyStore:
    """The database a daemon configured with `on_backend(url)` will use, opened (and
    migrated) before it starts, as an operator's earlier run would have left it."""
    store = await open_store_at(url, tmp_path / "state" / "jpixd.sqlite3")
    await store.migrate(datetime.now(UTC))
    return store


async def reopen(store: AnyStore) -> AnyStore:
    """A second connection to the same database, as a restarted daemon would open."""
    if isinstance(store, Store):
        return await Store.open(store.path)
    return await open_store_at(store.url, Path())


@pytest.fixture
async def sqlite_store(tmp_path: Path, now: datetime) -> AsyncIterator[Store]:
    """For what only SQLite has (its file, its pragmas, its migrations)."""
    s = await Store.open(tmp_path / "db" / "jpixd.sqlite3")
    await s.migrate(now)
    try:
        yield s
    finally:
        await s.close()


@dataclass
class RunningDaemon:
    daemon: Daemon
    task: asyncio.Task[int]
    base_url: str
    headers: dict[str, str] = field(default_factory=lambda: {
        "Authorization": f"Bearer {ADMIN_TOKEN}"})


@contextlib.asynccontextmanager
async def running_daemon(cfg: Config, extra_loops: list[Loop] | None = None,
                         **kwargs: Any) -> AsyncIterator[RunningDaemon]:
    """Start a Daemon in this event loop; stop it (as SIGTERM would) on exit."""
    daemon = Daemon(cfg, extra_loops=extra_loops or [], **kwargs)
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=15,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
        raise AssertionError("daemon exited before it was ready")
    assert ready in done, "daemon not ready within 15s"
    try:
        yield RunningDaemon(daemon, task, f"http://{daemon.bound[0]}")
    finally:
        if not task.done():
            assert daemon.runtime is not None
            daemon.runtime.supervisor.stop()
            await asyncio.wait_for(task, timeout=15)


class DaemonProcess:
    """A real `python -m jpixd run` child whose JSON log lines are read as they come.

    A thread reads stdout into a queue, so waiting for a line never depends on how the
    pipe happens to be buffered.
    """

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jpixd", *args], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_event(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        """Read log lines until one has this `event`; return that line's JSON object."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                obj = json.loads(line)
                if isinstance(obj, dict) and obj.get("event") == event:
                    return obj
        raise AssertionError(f"no {event!r} log line within {timeout}s; output:\n"
                             + "".join(self.lines))

    def wait_until(self, done: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 60.0) -> None:
        """Read log lines until `done(every JSON line so far)` holds."""
        events = [json.loads(ln) for ln in self.lines if ln.startswith("{")]
        end = time.monotonic() + timeout
        while not done(events):
            left = end - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"condition not met within {timeout}s; output:\n"
                                     + "".join(self.lines[-50:]))
            self.lines.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))

    def finish(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> DaemonProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        full["PYTHONUNBUFFERED"] = "1"
        full.update(env or {})
        p = DaemonProcess(args, full, tmp_path)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server mode as a real process on 127.0.0.1, shared by the whole session."""
    port = free_port()
    moto_bin = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    end = time.monotonic() + 60
    while (left := end - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if "Running on" in line:
            break
    else:
        proc.kill()
        raise AssertionError("moto_server did not start:\n" + "".join(seen))
    if not seen or "Running on" not in seen[-1]:
        proc.kill()
        raise AssertionError("moto_server did not start:\n" + "".join(seen))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands under test configure logging for the process (to capsys' streams); put
    the root logger back so no test writes into another test's closed stream."""
    import logging

    import structlog

    from jpixd import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    sink = logs.SINK.state()
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level = saved
    # Loggers structlog cached during the test write through the sink: point it back.
    logs.SINK.restore(sink)
    structlog.reset_defaults()


# CI=true (CodeBuild, .ci/run): a test skipped because a tool is missing fails the run,
# so that a green build never hides a suite that did not run (issue 22). Such skips say
# "not installed" or "needed" in their reason.
_MISSING_TOOL = ("not installed", "needed")
_tool_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if any(words in reason for words in _MISSING_TOOL):
            _tool_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") == "true" and _tool_skips and exitstatus == 0:
        session.exitstatus = 1
        sys.stderr.write(f"\nCI=true: {len(_tool_skips)} test(s) skipped for a missing tool "
                         "(scripts/install-test-tools.sh installs them):\n  "
                         + "\n  ".join(sorted(set(_tool_skips))[:20]) + "\n")
