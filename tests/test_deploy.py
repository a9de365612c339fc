"""The AWS estate's files (issue 15), each checked by a tool that knows its format, and
the CodeDeploy hooks run for real: install, migrate, start, validate; then a broken
build that fails ValidateService and is rolled back to the running version."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ADMIN_TOKEN, free_port, toml_dumps

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "deploy" / "hooks"
BIN = Path(sys.executable).parent


def test_the_cloudformation_template_passes_cfn_lint() -> None:
    templates = sorted((ROOT / "deploy" / "cloudformation").glob("*.yaml"))
    assert templates
    out = subprocess.run([str(BIN / "cfn-lint"), *map(str, templates)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _template() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):  # CloudFormation's short tags, as plain values
        pass

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        assert isinstance(node, yaml.MappingNode)
        return loader.construct_mapping(node, deep=True)

    Loader.add_multi_constructor("!", tag)
    text = (ROOT / "deploy" / "cloudformation" / "jpixd.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.load(text, Loader=Loader)  # a SafeLoader subclass
    return data


def test_the_template_promises_what_the_issue_asks() -> None:
    r = _template()["Resources"]
    queue = r["EventQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    bucket = r["ArchiveBucket"]["Properties"]
    assert bucket["BucketEncryption"] and bucket["LifecycleConfiguration"]["Rules"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    lt = r["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2
    assert lt["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    tg = r["PublicPages"]["Properties"]
    assert (tg["HealthCheckPath"], tg["Port"]) == ("/readyz", 8081)
    assert r["HttpsListener"]["Properties"]["DefaultActions"][0]["Type"] == "fixed-response"
    assert "Weight" in r["PublicRecord"]["Properties"]
    alarms = {v["Properties"]["MetricName"]: v["Properties"]["Threshold"]
              for v in r.values() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms["Reputation.BounceRate"] < 0.05 and alarms["Reputation.ComplaintRate"] < 0.001
    assert {"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible",
            "HTTPCode_Target_5XX_Count"} <= set(alarms)
    rules = {v["Properties"]["Source"]["SourceIdentifier"] for v in r.values()
             if v["Type"] == "AWS::Config::ConfigRule"}
    assert {"ENCRYPTED_VOLUMES", "EC2_IMDSV2_CHECK", "S3_BUCKET_PUBLIC_READ_PROHIBITED"} <= rules
    stages = [s["Name"] for s in r["Pipeline"]["Properties"]["Stages"]]
    assert stages == ["Source", "Build", "Deploy"]
    # The secrets' names are given; no value is (no parameter resource at all).
    assert not [v for v in r.values() if v["Type"] == "AWS::SSM::Parameter"]
    assert "admin-token" in _template()["Outputs"]["SsmParameters"]["Value"]


def test_buildspec_and_appspec_parse_and_name_files_that_exist() -> None:
    build = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    commands = build["phases"]["build"]["commands"]
    assert build["version"] == 0.2 and commands[0] == "make test"
    copied = [word for c in commands if c.startswith("cp ") for word in c.split()[1:-1]
              if not word.startswith("-")]
    assert copied and all((ROOT / word).exists() for word in copied), copied
    app = yaml.safe_load((ROOT / "appspec.yml").read_text())
    assert app["os"] == "linux"
    for hooks in app["hooks"].values():
        for hook in hooks:
            path = ROOT / hook["location"]
            assert path.is_file() and os.access(path, os.X_OK), hook["location"]


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (Debian package shellcheck)")
def test_every_hook_script_passes_shellcheck() -> None:
    scripts = [*sorted(HOOKS.glob("*.sh")), ROOT / "tests" / "fake_systemctl.sh",
               ROOT / "scripts" / "install-test-tools.sh"]
    out = subprocess.run(["shellcheck", "-x", "--source-path=SCRIPTDIR", *map(str, scripts)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus)")
def test_alert_rules_pass_promtool_and_match_new_relic() -> None:
    rules = ROOT / "deploy" / "prometheus" / "jpixd-alerts.yml"
    out = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    prom = " ".join(r["expr"] for g in yaml.safe_load(rules.read_text())["groups"]
                    for r in g["rules"])
    nrql = " ".join(c["nrql"] for c in yaml.safe_load(
        (ROOT / "deploy" / "newrelic" / "alerts.yml").read_text())["conditions"])
    for metric in ("jpixd_outbox_oldest_pending_age_seconds", "jpixd_sending_paused",
                   "jpixd_bounce_rate", "jpixd_complaint_rate", "jpixd_loop_up",
                   "jpixd_loop_heartbeat_age_seconds", "jpixd_feed_last_success_timestamp",
                   "layout_changed", "jpixd_loop_degraded", "jpixd_archive_pending"):
        assert metric in prom and metric in nrql, metric
    scrape = yaml.safe_load((ROOT / "deploy" / "newrelic" / "nri-prometheus.yml").read_text())
    assert scrape["targets"][0]["urls"] == ["http://127.0.0.1:8080/metrics"]
    agent = json.loads((ROOT / "deploy" / "cloudwatch" / "amazon-cloudwatch-agent.json")
                       .read_text())
    assert agent["logs"]["logs_collected"]["files"]["collect_list"][0]["log_group_name"] == \
        "/jpixd/journal"


# --------------------------------------------------------------------------- the hooks


def _bundle(into: Path, source: Path, wheelhouse: Path) -> Path:
    """A CodeDeploy bundle as buildspec.yml makes it: the wheelhouse and deploy/."""
    into.mkdir(parents=True)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--wheel-dir", str(into / "wheelhouse"), str(source)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("jpixd-"):
            shutil.copy(wheel, into / "wheelhouse")
    shutil.copytree(ROOT / "deploy", into / "deploy")
    return into


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    work = tmp_path_factory.mktemp("bundles")
    wheelhouse = work / "wheelhouse"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                          str(wheelhouse), str(ROOT)], capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    good = _bundle(work / "good", ROOT, wheelhouse)
    # A broken build: a newer version with a migration of its own, whose daemon exits at
    # once (never ready), as a release with a start-up bug would.
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "test-artifacts", "var",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"))
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"',
                                                       'version = "0.1.1.dev0"', 1))
    migrations = src / "jpixd" / "store" / "migrations"
    last = max(int(p.name[:4]) for p in migrations.glob("*.sql"))
    (migrations / f"{last + 1:04d}_broken.sql").write_text("CREATE TABLE broken_probe (id "
                                                           "INTEGER PRIMARY KEY);\n")
    cli = src / "jpixd" / "cli.py"
    cli.write_text(cli.read_text().replace(
        '    from jpixd.app import Daemon, ModeRefused\n',
        '    from jpixd.app import Daemon, ModeRefused\n'
        '    raise SystemExit("a start-up bug in this build")\n', 1))
    broken = _bundle(work / "broken", src, wheelhouse)
    yield good, broken


def _hook(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(HOOKS / f"{name}.sh")], env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def _ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return int(r.status)
    except OSError:
        return 0


def _schema(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])


def test_hooks_install_validate_and_roll_back_a_broken_build(
        tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    good, broken = bundles
    port = free_port()
    (tmp_path / "token").write_text(ADMIN_TOKEN + "\n")
    config = tmp_path / "jpixd.toml"
    config.write_text(toml_dumps({
        "state_dir": str(tmp_path / "state"), "shutdown_timeout": "5s",
        "http": {"listen": f"127.0.0.1:{port}", "admin_token_file": str(tmp_path / "token")},
        "mail": {"from": "noc@example.jp", "transport": "file",
                 "file": {"dir": str(tmp_path / "outbox")}},
        "logging": {"format": "json", "level": "info"}}), encoding="utf-8")
    prefix = tmp_path / "opt"
    env = {**os.environ, "JPIXD_PREFIX": str(prefix), "JPIXD_CONFIG": str(config),
           "JPIXD_SYSTEMCTL": str(ROOT / "tests" / "fake_systemctl.sh"),
           "JPIXD_READY_URL": f"http://127.0.0.1:{port}/readyz", "JPIXD_READY_TIMEOUT": "30",
           "JPIXD_PYTHON": sys.executable}
    try:
        # The first release: install (venv, offline), migrate, start, validate.
        first = {**env, "JPIXD_BUNDLE": str(good), "DEPLOYMENT_ID": "d-good"}
        for hook in ("stop", "install", "start", "validate"):
            out = _hook(hook, first)
            assert out.returncode == 0, (hook, out.stderr)
        assert os.readlink(prefix / "current") == str(prefix / "releases" / "d-good")
        assert _ready(port) == 200
        db = tmp_path / "state" / "jpixd.sqlite3"
        version = _schema(db)

        # A broken build: stopped with a drain, installed and migrated, started, never
        # ready — validate fails and rolls back to the release that ran, database too.
        second = {**env, "JPIXD_BUNDLE": str(broken), "DEPLOYMENT_ID": "d-broken",
                  "JPIXD_READY_TIMEOUT": "15"}
        for hook in ("stop", "install", "start"):
            out = _hook(hook, second)
            assert out.returncode == 0, (hook, out.stderr)
        assert _schema(db) == version + 1  # the broken build migrated
        out = _hook("validate", second)
        assert out.returncode == 1
        assert "rolling back" in out.stderr and "which is ready" in out.stderr
        assert os.readlink(prefix / "current") == str(prefix / "releases" / "d-good")
        assert _schema(db) == version  # the old release can open it again
        assert _ready(port) == 200
        assert "a start-up bug in this build" in (prefix / "jpixd.log").read_text()
    finally:
        _hook("stop", env)
