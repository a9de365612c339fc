"""The CodeDeploy hooks run for real (issue 22), as root under a scratch prefix, against a
systemctl stand-in that fails as systemd does (`tests/fake_systemd.py`: Type=notify,
User=, StateDirectory=): a fresh host comes up from the bundle and the stack's settings
(SSM, SQS and SES on moto); a release that crashes at start after adding a migration is
rolled back by the hooks, database included, within 60 s; an additive migration needs no
restore; CodeDeploy's redeploy of the previous revision succeeds and keeps every
subscriber and delivery, also when the failed release's hooks never rolled back."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jpixd.store.pg import migrate as pg_migrate
from tests.conftest import ADMIN_TOKEN, free_port, toml_dumps
from tests.pgserver import needs_postgres, postgres_db, postgres_server, postgres_template  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "deploy" / "hooks"
USER = "jpixd-hooktest"

# The release's venv is made from the host's Python, as on EC2 (/usr/bin/python3.11): the
# service user must be able to run it (a Python under /root would not do).
HOST_PYTHON = "/usr/bin/python3.11"
# The PostgreSQL schema this checkout ends at (a variant bundle adds one more).
PG_LATEST = pg_migrate.bundled()[-1].version


def _host_python_makes_venvs() -> bool:
    if not os.access(HOST_PYTHON, os.X_OK):
        return False
    return subprocess.run([HOST_PYTHON, "-c", "import ensurepip, venv"],
                          capture_output=True, check=False).returncode == 0


pytestmark = [
    # A deployment makes a venv from a wheelhouse (about 20 s); a test makes up to four,
    # and the first builds the bundles: above every wait below (each hook at most 300 s).
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                       reason="the hooks make a service user: root and useradd are needed"),
    pytest.mark.skipif(not _host_python_makes_venvs(),
                       reason=f"{HOST_PYTHON} with venv (Debian: python3.11-venv) is needed"),
]


def _bundle(into: Path, source: Path, wheelhouse: Path) -> Path:
    """A CodeDeploy bundle as buildspec.yml makes it: the wheelhouse, deploy/, the
    appspec and the production example config."""
    into.mkdir(parents=True)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--wheel-dir", str(into / "wheelhouse"), str(source)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("jpixd-"):
            shutil.copy(wheel, into / "wheelhouse")
    shutil.copytree(ROOT / "deploy", into / "deploy")
    shutil.copy(ROOT / "appspec.yml", into / "appspec.yml")
    shutil.copy(ROOT / "etc" / "jpixd.toml", into / "jpixd.toml.example")
    return into


def _variant(work: Path, name: str, version: str, migration: str, *,
             pg_migration: str | None = None, bug: bool = True) -> Path:
    """The source with a newer version, one migration more (on PostgreSQL too when
    given), and a start-up bug unless told not."""
    src = work / f"src-{name}"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "test-artifacts", "var",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"))
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"',
                                                       f'version = "{version}"', 1))
    migrations = src / "jpixd" / "store" / "migrations"
    last = max(int(p.name[:4]) for p in migrations.glob("*.sql"))
    (migrations / f"{last + 1:04d}_{name}.sql").write_text(migration)
    if pg_migration is not None:
        pg = src / "jpixd" / "store" / "pg" / "migrations"
        last = max(int(p.name[:4]) for p in pg.glob("*.sql"))
        (pg / f"{last + 1:04d}_{name}.sql").write_text(pg_migration)
    if not bug:
        return src
    cli = src / "jpixd" / "cli.py"
    cli.write_text(cli.read_text().replace(
        '    from jpixd.app import Daemon, ModeRefused\n',
        '    from jpixd.app import Daemon, ModeRefused\n'
        '    raise SystemExit("a start-up bug in this build")\n', 1))
    return src


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("bundles")
    wheelhouse = work / "wheelhouse"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                          str(wheelhouse), str(ROOT)], capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    # A breaking migration (it drops what the running release reads) and an additive one.
    rename = "ALTER TABLE subscribers RENAME COLUMN organization TO org;\n"
    breaking = _variant(work, "breaking", "0.1.1.dev0", rename, pg_migration=rename)
    additive = _variant(work, "additive", "0.1.2.dev0",
                        "-- older releases: compatible\nCREATE TABLE added_later "
                        "(id INTEGER PRIMARY KEY);\n")
    # A newer release that works, adding a table on both databases (several hosts).
    added = "-- older releases: compatible\nCREATE TABLE added_later (id bigint PRIMARY KEY);\n"
    newer = _variant(work, "newer", "0.1.3.dev0", added, pg_migration=added, bug=False)
    return {"good": _bundle(work / "good", ROOT, wheelhouse),
            "breaking": _bundle(work / "breaking", breaking, wheelhouse),
            "additive": _bundle(work / "additive", additive, wheelhouse),
            "newer": _bundle(work / "newer", newer, wheelhouse)}


@dataclass
class Host:
    root: Path
    env: dict[str, str]
    port: int

    @property
    def prefix(self) -> Path:
        return self.root / "opt" / "jpixd"

    @property
    def db(self) -> Path:
        return self.root / "var" / "lib" / "jpixd" / "jpixd.sqlite3"

    def hook(self, name: str, bundle: Path, deployment: str
             ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "JPIXD_BUNDLE": str(bundle), "DEPLOYMENT_ID": deployment}
        return subprocess.run(["sh", str(bundle / "deploy" / "hooks" / f"{name}.sh")],
                              env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    def deploy(self, bundle: Path, deployment: str) -> str:
        """A whole CodeDeploy deployment that must succeed; what its hooks said."""
        said = []
        for hook in ("stop", "install", "start", "validate"):
            out = self.hook(hook, bundle, deployment)
            assert out.returncode == 0, \
                f"{hook} failed:\n{out.stderr}\n--- the service log:\n{self.log()[-3000:]}"
            said.append(out.stderr)
        return "".join(said)

    def current(self) -> str:
        return Path(os.readlink(self.prefix / "current")).name

    def ready(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                        timeout=5) as r:
                return int(r.status)
        except OSError:
            return 0

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/admin/v1{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def schema(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    def log(self) -> str:
        path = self.root / "run" / "jpixd.service.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def host() -> Iterator[Host]:
    with _new_host() as h:
        yield h


@contextmanager
def _new_host() -> Iterator[Host]:
    # A host's own umask, whatever an earlier test left in this process (jpixd's CLI,
    # called in-process, sets 027: the service user could not reach these folders).
    umask = os.umask(0o022)
    # Not under pytest's tmp (0700 root): the service user must reach its release.
    root = Path(tempfile.mkdtemp(prefix="jpixd-host-", dir="/tmp"))
    root.chmod(0o755)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JPIXD_")},
           "JPIXD_PREFIX": str(root / "opt" / "jpixd"),
           "JPIXD_CONFIG": str(root / "etc" / "jpixd" / "jpixd.toml"),
           "JPIXD_STATE_DIR": str(root / "var" / "lib" / "jpixd"),
           "JPIXD_STATE_ROOT": str(root / "var" / "lib"),
           "JPIXD_LOG_DIR": str(root / "var" / "log" / "jpixd"),
           "JPIXD_UNIT_DIR": str(root / "etc" / "systemd" / "system"),
           "JPIXD_LOGROTATE_DIR": str(root / "etc" / "logrotate.d"),
           "JPIXD_SYSTEMD_RUN": str(root / "run"),
           "JPIXD_SYSTEMCTL": str(ROOT / "tests" / "fake_systemctl.sh"),
           "JPIXD_TEST_PYTHON": sys.executable, "JPIXD_PYTHON": HOST_PYTHON,
           "JPIXD_USER": USER, "JPIXD_KEEP_RELEASES": "1",
           "JPIXD_READY_URL": f"http://127.0.0.1:{port}/readyz", "JPIXD_READY_TIMEOUT": "30"}
    for d in ("etc/systemd/system", "etc/logrotate.d", "run"):
        (root / d).mkdir(parents=True)
    h = Host(root, env, port)
    try:
        yield h
    finally:
        subprocess.run([sys.executable, str(ROOT / "tests" / "fake_systemd.py"), "stop",
                        "jpixd"], env=env, check=False, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
        os.umask(umask)


def _local_config(h: Host) -> None:
    """What an operator put in /etc/jpixd before the first deployment (no AWS)."""
    etc = h.root / "etc" / "jpixd"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "admin-token").write_text(ADMIN_TOKEN + "\n")
    feed = h.root / "feed.json"
    feed.write_text(json.dumps({"notices": []}))
    (etc / "jpixd.toml").write_text(toml_dumps({
        "state_dir": str(h.root / "var" / "lib" / "jpixd"), "shutdown_timeout": "5s",
        "http": {"listen": f"127.0.0.1:{h.port}", "admin_token_file": str(etc / "admin-token")},
        "mail": {"from": "noc@example.jp", "transport": "file",
                 "file": {"dir": str(h.root / "var" / "lib" / "jpixd" / "outbox")}},
        "sources": [{"name": "local", "kind": "json", "carrier": "east", "interval": "1h",
                     "url": feed.as_uri()}],
        "logging": {"format": "json", "level": "info"}}))
    for path in (etc, etc / "admin-token", etc / "jpixd.toml", feed):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _some_state(h: Host) -> tuple[int, int]:
    """Subscribers and a notice's deliveries, through the running release; their counts."""
    for i in range(5):
        h.admin("POST", "/subscribers", {"email": f"noc{i}@isp.example.jp"})
    (h.root / "feed.json").write_text(json.dumps({"notices": [
        {"id": "F1", "kind": "failure", "title": "故障", "prefectures": ["13"]}]},
        ensure_ascii=False))
    assert h.admin("POST", "/sources/local/poll")["result"] == "ok"
    with sqlite3.connect(h.db) as conn:
        subs = conn.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0]
        deliveries = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    assert (subs, deliveries) == (5, 5)
    return int(subs), int(deliveries)


def _good_then_installed(h: Host, good: Path, bundle: Path,
                         deployment: str) -> tuple[int, tuple[int, int]]:
    """The good release running with some state, then `bundle` stopped-and-installed over
    it (migrated, not started); the schema before, and the state."""
    _local_config(h)
    h.deploy(good, "d-good")
    version, state = h.schema(), _some_state(h)
    for hook in ("stop", "install"):
        out = h.hook(hook, bundle, deployment)
        assert out.returncode == 0, f"{hook} failed:\n{out.stderr}"
    return version, state


def _counts(h: Host) -> tuple[int, int]:
    with sqlite3.connect(h.db) as conn:
        return (int(conn.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0]),
                int(conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]))


def test_a_release_that_crashes_at_start_after_a_breaking_migration_is_rolled_back(
        host: Host, bundles: dict[str, Path]) -> None:
    _local_config(host)
    host.deploy(bundles["good"], "d-good")
    assert host.ready() == 200 and host.current() == "d-good"
    version = host.schema()
    state = _some_state(host)

    for hook in ("stop", "install"):
        out = host.hook(hook, bundles["breaking"], "d-breaking")
        assert out.returncode == 0, (hook, out.stderr)
    assert host.schema() == version + 1  # it migrated
    started = time.monotonic()
    out = host.hook("start", bundles["breaking"], "d-breaking")
    took = time.monotonic() - started
    assert out.returncode == 1, out.stderr  # the deployment fails, loudly
    assert "did not start on d-breaking: rolling back" in out.stderr
    assert "database restored from" in out.stderr
    assert "rolled back to d-good, which is ready" in out.stderr
    assert took < 60, took
    assert "a start-up bug in this build" in host.log()
    assert host.ready() == 200 and host.current() == "d-good"
    assert host.schema() == version and _counts(host) == state

    # CodeDeploy's own rollback: the previous revision deployed again, as a new release.
    host.deploy(bundles["good"], "d-redeploy")
    assert host.ready() == 200 and host.current() == "d-redeploy"
    assert host.schema() == version and _counts(host) == state
    # Pruned: the newest release besides `current` and `previous` (KEEP_RELEASES=1).
    left = sorted(p.name for p in (host.prefix / "releases").iterdir())
    assert left == ["d-good", "d-redeploy"], left


def test_an_additive_migration_needs_no_restore(host: Host,
                                                bundles: dict[str, Path]) -> None:
    version, state = _good_then_installed(host, bundles["good"], bundles["additive"],
                                          "d-additive")
    out = host.hook("start", bundles["additive"], "d-additive")
    assert out.returncode == 1
    assert "the database stays as d-additive left it: d-good runs on it" in out.stderr
    assert "database restored" not in out.stderr
    assert host.ready() == 200 and host.current() == "d-good"
    assert host.schema() == version + 1 and _counts(host) == state  # nothing lost


def test_a_redeploy_undoes_a_migration_its_hooks_never_rolled_back(
        host: Host, bundles: dict[str, Path]) -> None:
    """The failed deployment's hooks were cut short after its migration (no start, no
    rollback): CodeDeploy's redeploy of the previous revision still comes up, its
    install putting back the pre-migration copy, since nothing was written after it."""
    version, state = _good_then_installed(host, bundles["good"], bundles["breaking"],
                                          "d-breaking")
    assert host.schema() == version + 1
    out = host.hook("install", bundles["good"], "d-redo")
    assert out.returncode == 0, out.stderr
    assert "undoing d-breaking's migration" in out.stderr
    assert "WARNING" not in out.stderr  # nothing was written after it
    for hook in ("start", "validate"):
        assert host.hook(hook, bundles["good"], "d-redo").returncode == 0
    assert host.ready() == 200 and host.schema() == version and _counts(host) == state


def test_install_is_idempotent_and_a_failed_install_restarts_the_running_release(
        host: Host, bundles: dict[str, Path]) -> None:
    _local_config(host)
    host.deploy(bundles["good"], "d-one")
    host.deploy(bundles["good"], "d-two")
    # CodeDeploy runs AfterInstall again with the same id: nothing reinstalled, the
    # database not backed up again, `previous` not made `current`.
    again = host.hook("install", bundles["good"], "d-two")
    assert again.returncode == 0 and "installed already" in again.stderr
    assert Path(os.readlink(host.prefix / "previous")).name == "d-one"
    assert host.current() == "d-two"
    # A bundle that cannot be installed (its wheel is missing), after ApplicationStop
    # stopped jpixd: the release that ran is started again.
    broken = host.root / "bundle-without-wheel"
    shutil.copytree(bundles["good"], broken)
    for wheel in (broken / "wheelhouse").glob("jpixd-*.whl"):
        wheel.unlink()
    assert host.hook("stop", broken, "d-three").returncode == 0
    assert host.ready() == 0
    out = host.hook("install", broken, "d-three")
    assert out.returncode != 0
    assert "putting the release that ran back" in out.stderr
    assert host.ready() == 200 and host.current() == "d-two"


def test_a_fresh_host_comes_up_from_the_bundle_and_the_stack_settings(
        host: Host, bundles: dict[str, Path], moto_url: str) -> None:
    """Nothing on the host but what UserData writes (stack.env); SSM parameters put as
    the runbook says; the first deployment does the rest."""
    _stack_host(host, moto_url, _aws_params(moto_url, "jpixd-hooks-fresh"),
                ["JPIXD_SHADOW=true"])
    etc = host.root / "etc" / "jpixd"
    host.deploy(bundles["good"], "d-first")
    assert host.ready() == 200
    user = pwd.getpwnam(USER)
    config = etc / "jpixd.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640 and config.stat().st_gid == user.pw_gid
    assert 'admin_token = "ssm:/jpixd/admin-token"' in config.read_text()
    assert 'trusted_proxies = ["10.20.0.0/16"]' in config.read_text()
    state = host.root / "var" / "lib" / "jpixd"
    assert state.stat().st_uid == user.pw_uid and stat.S_IMODE(state.stat().st_mode) == 0o750
    assert host.db.stat().st_uid == user.pw_uid  # migrated as the service user
    units = host.root / "etc" / "systemd" / "system"
    # The units, with this host's paths (on EC2 they are the defaults).
    assert f"ExecStart={host.prefix}/current/bin/jpixd run" in \
        (units / "jpixd.service").read_text()
    assert f"User={USER}" in (units / "jpixd.service").read_text()
    assert f"{host.root}/var/log/jpixd/journal.jsonl" in \
        (units / "jpixd-journal.service").read_text()
    assert f"{host.prefix}/current/bin/jpixd backup {host.root}/var/lib/jpixd/backups/daily" \
        in (units / "jpixd-backup.service").read_text()
    assert "OnCalendar=" in (units / "jpixd-backup.timer").read_text()
    for flag in ("jpixd.service.enabled", "jpixd-journal.service.enabled",
                 "jpixd-backup.timer.enabled", "jpixd-journal.service.started",
                 "jpixd-backup.timer.started"):
        assert (host.root / "run" / flag).exists(), flag
    assert (host.root / "etc" / "logrotate.d" / "jpixd").exists()
    status = host.admin("GET", "/status")
    assert status["transport"] == "ses" and status["ready"] is True
    # The stack's ShadowMode: the first deployment never mails (issue 23).
    assert (units / "jpixd.service.d" / "shadow.conf").exists()
    assert status["mode"]["shadow"] is True
    # The second deployment changes nothing on the host that the first made.
    before = config.read_text()
    host.deploy(bundles["good"], "d-second")
    assert config.read_text() == before and host.ready() == 200
    # After the cut-over (as the runbook does it), the next deployment runs for real.
    assert host.hook("stop", bundles["good"], "d-third").returncode == 0
    cut = subprocess.run(["runuser", "-u", USER, "--",
                          str(host.prefix / "current" / "bin" / "jpixd"), "cutover", "--yes",
                          "--config", str(config)], capture_output=True, text=True,
                         env={**os.environ, **dict(line.split("=", 1) for line in (
                             etc / "env").read_text().splitlines())},
                         timeout=60, check=False)
    assert cut.returncode == 0, cut.stderr
    (etc / "cut-over").touch()
    for hook in ("install", "start", "validate"):
        out = host.hook(hook, bundles["good"], "d-third")
        assert out.returncode == 0, f"{hook}: {out.stderr}\n{host.log()[-2000:]}"
    assert not (units / "jpixd.service.d" / "shadow.conf").exists()
    assert host.admin("GET", "/status")["mode"]["shadow"] is False


def _stack_host(h: Host, moto_url: str, queue: str, extra: list[str]) -> None:
    """What UserData leaves on a host of the stack (stack.env, the unit's credentials)."""
    etc = h.root / "etc" / "jpixd"
    etc.mkdir(parents=True)
    (etc / "stack.env").write_text("\n".join([
        "JPIXD_REGION=ap-northeast-1", f"JPIXD_QUEUE_URL={queue}",
        "JPIXD_BASE_URL=https://notice.example.jp", "JPIXD_MAIL_FROM=noc-notice@example.jp",
        "JPIXD_VPC_CIDR=10.20.0.0/16", f"JPIXD_LISTEN=127.0.0.1:{h.port}",
        f"JPIXD_PUBLIC_LISTEN=127.0.0.1:{free_port()}", f"JPIXD_AWS_ENDPOINT_URL={moto_url}",
        *extra, ""]))
    # On EC2 the instance role gives credentials; here the unit's EnvironmentFile does.
    (etc / "env").write_text("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n"
                             "AWS_EC2_METADATA_DISABLED=true\n")


def _aws_params(moto_url: str, queue_name: str) -> str:
    import boto3  # type: ignore[import-untyped]  # moto's dependency, without stubs

    kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": moto_url}
    ssm = boto3.client("ssm", **kw)
    for name, value in (("/jpixd/admin-token", ADMIN_TOKEN), ("/jpixd/web-keys", "w" * 40),
                        ("/jpixd/db-password", "unused-the-test-server-trusts")):
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
    boto3.client("ses", **kw).verify_email_identity(EmailAddress="noc-notice@example.jp")
    return str(boto3.client("sqs", **kw).create_queue(QueueName=queue_name)["QueueUrl"])


@needs_postgres
def test_several_hosts_share_one_postgresql_migrated_once_after_a_snapshot(
        bundles: dict[str, Path], moto_url: str, postgres_db: str,  # noqa: F811
        tmp_path: Path) -> None:
    """Issue 23, part 7: two hosts of the Auto Scaling group, rendered from the stack's
    settings onto one PostgreSQL. A release that migrates is deployed one host at a time:
    the first snapshots the database (RDS, through `aws`) and migrates it, the other keeps
    serving on the older release meanwhile and then finds nothing to do. No per-host
    SQLite backup runs."""
    queue = _aws_params(moto_url, "jpixd-hooks-several")
    aws_dir = tmp_path / "aws"
    aws_dir.mkdir()
    with _new_host() as a, _new_host() as b:
        for h in (a, b):
            _stack_host(h, moto_url, queue, [f"JPIXD_DATABASE_URL={postgres_db}",
                                              "JPIXD_DB_INSTANCE=jpixd-db"])
            h.env.update(JPIXD_AWS=str(ROOT / "tests" / "fake_aws.sh"),
                         JPIXD_FAKE_AWS_DIR=str(aws_dir))
        said = a.deploy(bundles["good"], "d-One") + b.deploy(bundles["good"], "d-One")
        assert a.ready() == b.ready() == 200
        assert said.count(": up to date") == 2  # the template database: nothing to migrate
        assert not (aws_dir / "calls").exists()  # so no snapshot either
        for h in (a, b):
            config = (h.root / "etc" / "jpixd" / "jpixd.toml").read_text()
            assert f'database_url = "{postgres_db}"' in config
            assert 'database_password = "ssm:/jpixd/db-password"' in config
            assert not (h.root / "run" / "jpixd-backup.timer.enabled").exists()
            assert not (h.root / "var" / "lib" / "jpixd" / "jpixd.sqlite3").exists()
        # One state: what one host records, the other shows.
        a.admin("POST", "/subscribers", {"email": "noc@isp.example.jp"})
        assert b.admin("GET", "/subscribers")["total"] == 1

        said = a.deploy(bundles["newer"], "d-Two")
        added = PG_LATEST + 1
        assert f"would apply [{added}]" in said and "snapshot jpixd-pre-d-two is available" in said
        calls = (aws_dir / "calls").read_text().splitlines()
        assert [c.split()[:2] for c in calls] == [["rds", "describe-db-snapshots"],
                                                  ["rds", "create-db-snapshot"],
                                                  ["rds", "wait"]]
        assert "--db-instance-identifier jpixd-db --db-snapshot-identifier jpixd-pre-d-two" \
            in calls[1]
        # The other host, still on the older release, serves on the migrated database.
        assert b.ready() == 200 and b.admin("GET", "/subscribers")["total"] == 1
        said = b.deploy(bundles["newer"], "d-Two")
        assert ": up to date" in said and "snapshot" not in said
        assert len((aws_dir / "calls").read_text().splitlines()) == 3  # no second one
        assert a.admin("GET", "/status")["version"] == b.admin("GET", "/status")["version"]
        async def applied() -> list[int]:
            conn = await asyncpg.connect(postgres_db)
            try:
                return [r[0] for r in await conn.fetch(
                    "SELECT version FROM schema_migrations ORDER BY version")]
            finally:
                await conn.close()

        assert asyncio.run(applied()) == list(range(1, added + 1))
        assert b.admin("GET", "/subscribers")["total"] == 1


@needs_postgres
def test_a_failed_release_on_several_hosts_never_puts_the_shared_database_back(
        bundles: dict[str, Path], moto_url: str, postgres_db: str,  # noqa: F811
        tmp_path: Path) -> None:
    """A release that migrated the shared database in a way the previous one cannot run
    on, and then fails to start: the hook does not restore anything (the other hosts have
    written since); it says so, and names the snapshot a person can restore."""
    queue = _aws_params(moto_url, "jpixd-hooks-several-rollback")
    aws_dir = tmp_path / "aws"
    aws_dir.mkdir()
    with _new_host() as a:
        _stack_host(a, moto_url, queue, [f"JPIXD_DATABASE_URL={postgres_db}",
                                         "JPIXD_DB_INSTANCE=jpixd-db"])
        a.env.update(JPIXD_AWS=str(ROOT / "tests" / "fake_aws.sh"),
                     JPIXD_FAKE_AWS_DIR=str(aws_dir))
        a.deploy(bundles["good"], "d-good")
        a.admin("POST", "/subscribers", {"email": "noc@isp.example.jp"})
        for hook in ("stop", "install"):
            out = a.hook(hook, bundles["breaking"], "d-breaking")
            assert out.returncode == 0, out.stderr
        assert f"older releases cannot run on [{PG_LATEST + 1}]" in out.stderr
        assert "snapshot jpixd-pre-d-breaking is available" in out.stderr
        out = a.hook("start", bundles["breaking"], "d-breaking")
        assert out.returncode == 1
        assert "ROLLBACK NEEDS THE DATABASE" in out.stderr
        assert "jpixd-pre-d-breaking" in out.stderr and "restored" not in out.stderr
        assert a.ready() == 0  # nothing runs on a database it cannot read

        async def columns() -> set[str]:
            conn = await asyncpg.connect(postgres_db)
            try:
                return {r[0] for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'subscribers'")}
            finally:
                await conn.close()

        assert "org" in asyncio.run(columns())  # left as the failed release made it
