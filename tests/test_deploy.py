"""The AWS estate's files (issue 15), each checked by a tool that knows its format, and
the CodeDeploy hooks run for real: install, migrate, start, validate; then a broken
build that fails ValidateService and is rolled back to the running version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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
