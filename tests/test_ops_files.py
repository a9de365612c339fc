"""Operational files: the systemd unit verifies, metrics pass promtool, and the package
the Dockerfile installs (a plain, non-editable wheel) carries its data files."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import ROOT, make_config, running_daemon


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (Debian package systemd)")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "systemd" / "jpixd.service").read_text()
    # verify checks that ExecStart exists; point it at this checkout's entry point.
    jpixd_bin = Path(sys.executable).parent / "jpixd"
    assert "/opt/jpixd/current/bin/jpixd" in unit  # the release deploy/hooks switched to
    local = tmp_path / "jpixd.service"
    local.write_text(unit.replace("/opt/jpixd/current/bin/jpixd", str(jpixd_bin)))
    result = subprocess.run(["systemd-analyze", "verify", str(local)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "jpixd.service" not in result.stderr, result.stderr
    journal = tmp_path / "jpixd-journal.service"
    journal.write_text((ROOT / "deploy" / "systemd" / "jpixd-journal.service").read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(journal)],
                            capture_output=True, text=True, timeout=60)
    assert "jpixd-journal.service" not in result.stderr, result.stderr
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=jpixd",
                 "StateDirectory=jpixd", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "PrivateTmp=yes"):
        assert line in unit


def test_stop_timeout_exceeds_the_production_shutdown_timeout() -> None:
    from jpixd.config import load_path, parse_duration

    unit = (ROOT / "deploy" / "systemd" / "jpixd.service").read_text()
    stop = next(ln.split("=", 1)[1] for ln in unit.splitlines()
                if ln.startswith("TimeoutStopSec="))
    cfg = load_path(ROOT / "etc" / "jpixd.toml", env={"JPIXD_ADMIN_TOKEN": "x" * 20,
                                                       "JPIXD_BACKLOG_API_KEY": "y" * 20,
                                                       "JPIXD_WEB_SECRET_KEYS": "z" * 32})
    assert parse_duration(stop) > cfg.shutdown_timeout


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus)")
async def test_metrics_pass_promtool(tmp_path: Path) -> None:
    async with running_daemon(make_config(tmp_path), registry=CollectorRegistry()) as d:
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
    for name in ("jpixd_loop_up", "jpixd_deliveries", "jpixd_outbox_oldest_pending_age_seconds",
                 "jpixd_sending_paused", "jpixd_send_rate_limit_per_second",
                 "jpixd_bounce_rate", "jpixd_complaint_rate", "jpixd_suppressed_addresses",
                 "jpixd_backlog_open_tickets", "jpixd_ses_quota_remaining_24h"):
        assert f"\n{name}" in text or text.startswith(name), name
    result = await asyncio.to_thread(subprocess.run, ["promtool", "check", "metrics"],
                                     input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_package_carries_its_data_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("jpixd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("jpixd/store/migrations/0001_initial.sql",
                   "jpixd/store/migrations/0002_feed_state.sql", "jpixd/defaults/jpixd.toml",
                   "jpixd/defaults/samples/ntt-west.rss",
                   "jpixd/defaults/samples/west/f-20261128-01.html",
                   "jpixd/defaults/samples/subscribers.csv",
                   "jpixd/templates/subject.txt.j2", "jpixd/templates/body.txt.j2",
                   "jpixd/templates/confirm.txt.j2", "jpixd/templates/web/signup.html",
                   "jpixd/templates/web/console/status.html", "jpixd/static/jpixd.css",
                   "jpixd/static/jpixd.js", "jpixd/store/migrations/0011_leases.sql",
                   "jpixd/store/pg/migrations/0001_baseline.sql", "jpixd/py.typed"):
        assert needed in names, f"{needed} missing from the wheel"
    assert not any(n.startswith("tests/") for n in names)


def test_dockerfile_runs_as_a_user_and_checks_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER jpixd\n" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "tzdata" in text
    # Everything it copies exists.
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_the_aws_libraries_load_only_when_configured() -> None:
    """Issue 13: `jpixd run` imported every client library even when unused (botocore
    alone is a tenth of a second of start-up for a file or SMTP installation)."""
    code = ("import sys, jpixd.app, jpixd.cli, jpixd.secrets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('botocore', 'aiobotocore', 'boto3') or m in ('jpixd.web.public', "
            "'jpixd.web.selfservice', 'jpixd.web.board', 'jpixd.web.sysmail', "
            "'jpixd.archive')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    # Nor the public pages or the archive for a daemon that serves or keeps none.
    assert out.stdout.strip() == "[]"


async def test_every_labelled_series_exists_from_start(tmp_path: Path) -> None:
    """SPEC §9 (issue 24, part 6): after a restart an alert on a failure counter sees 0,
    not nothing; the configured transport, every failure reason, SQS result, documented
    SES notification kind and each source's notice kinds and changes are there at once."""
    from prometheus_client.parser import text_string_to_metric_families

    feed = tmp_path / "feed.json"
    feed.write_text('{"notices": []}')
    cfg = make_config(tmp_path, sources=[{"name": "east", "kind": "json", "carrier": "east",
                                          "interval": "1h", "url": feed.as_uri()}])
    async with running_daemon(cfg, registry=CollectorRegistry()) as d:
        async with aiohttp.ClientSession() as http, http.get(d.base_url + "/metrics") as r:
            text = await r.text()
        from jpixd.backlog.client import OPS, BacklogClient

        assert d.daemon.runtime is not None
        async with aiohttp.ClientSession() as session:  # a client: no call made yet
            BacklogClient(session, "https://example.backlog.jp", "k" * 20,
                          metrics=d.daemon.metrics)
        backlog = d.daemon.metrics.registry
    series = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}

    def zero(name: str, **labels: str) -> bool:
        return series.get((name, tuple(sorted(labels.items())))) == 0.0

    assert zero("jpixd_emails_sent_total", transport="file")
    assert zero("jpixd_send_duration_seconds_count", transport="file")
    for reason in ("throttled", "transient", "permanent", "paused"):
        assert zero("jpixd_email_send_failures_total", reason=reason), reason
    for result in ("processed", "duplicate", "quarantined"):
        assert zero("jpixd_sqs_messages_total", result=result), result
    assert zero("jpixd_mail_events_total", type="Bounce", subtype="Permanent/General")
    assert zero("jpixd_mail_events_total", type="Complaint", subtype="abuse")
    for kind in ("construction", "failure"):
        for change in ("new", "update", "cancel", "complete", "recover", "reminder"):
            assert zero("jpixd_notices_total", source="east", kind=kind, change=change)
    assert zero("jpixd_feed_polls_total", source="east", result="layout_changed")
    assert zero("jpixd_loop_restarts_total", loop="sender")
    for op in OPS:
        assert backlog.get_sample_value("jpixd_backlog_requests_total",
                                        {"op": op, "status": "error"}) == 0.0, op


def test_the_web_reads_loops_through_their_surface_only() -> None:
    """Issue 24, part 2: the pages and the API get what they need through the runtime's
    typed surfaces (`outbound`, `renderer`, `poll_source`, `Loop.status`), never by
    importing a loop's class; the daemon hands a reload to every loop (`Loop.apply`)
    instead of routing it by name."""
    import ast

    loops = {"jpixd.mail.sender", "jpixd.feeds.poller", "jpixd.backlog.reconciler",
             "jpixd.bounces.consumer", "jpixd.archive", "jpixd.housekeeping"}
    for path in sorted((ROOT / "jpixd" / "web").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & loops, (path.name, imported & loops)
    app = (ROOT / "jpixd" / "app.py").read_text(encoding="utf-8")
    body = app[app.index("    def _apply("):app.index("    def _on_signal(")]
    assert "lp.apply(change)" in body and "isinstance(" not in body
