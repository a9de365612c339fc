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
    # With the informational checks too: I3011 is a stateful resource without an explicit
    # DeletionPolicy / UpdateReplacePolicy (issue 22).
    out = subprocess.run([str(BIN / "cfn-lint"), "--include-checks", "I", "--",
                          *map(str, templates)], capture_output=True, text=True, timeout=300,
                         check=False)
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


def _unconditioned(statements: list[Any]) -> list[dict[str, Any]]:
    """A policy's statements, those under an !If [condition, statement, NoValue] too."""
    out = []
    for st in statements:
        if isinstance(st, list):
            out += [x for x in st[1:] if isinstance(x, dict)]
        else:
            out.append(st)
    return out


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
               ROOT / "tests" / "fake_aws.sh",
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
                   "layout_changed", "jpixd_loop_degraded", "jpixd_archive_pending",
                   "jpixd_channel_messages_total"):
        assert metric in prom and metric in nrql, metric
    scrape = yaml.safe_load((ROOT / "deploy" / "newrelic" / "nri-prometheus.yml").read_text())
    assert scrape["targets"][0]["urls"] == ["http://127.0.0.1:8080/metrics"]
    agent = json.loads((ROOT / "deploy" / "cloudwatch" / "amazon-cloudwatch-agent.json")
                       .read_text())
    assert agent["logs"]["logs_collected"]["files"]["collect_list"][0]["log_group_name"] == \
        "/jpixd/journal"


STATEFUL = {"AWS::KMS::Key", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::S3::Bucket",
            "AWS::EC2::Volume", "AWS::Backup::BackupVault", "AWS::RDS::DBInstance"}


def test_the_data_outlives_the_instance_and_a_routine_update() -> None:
    """Issue 22, part 3: the AMI does not change under an update; the state is on a
    volume of its own, snapshotted when replaced or deleted and backed up daily; every
    stateful resource says what happens to it; the key outlives the archive it opens."""
    t = _template()
    r = t["Resources"]
    assert t["Parameters"]["ImageId"]["Type"] == "AWS::EC2::Image::Id"  # pinned, not SSM
    for name, res in r.items():
        if res["Type"] in STATEFUL:
            assert res.get("DeletionPolicy") in ("Retain", "Snapshot"), name
            assert res.get("UpdateReplacePolicy") in ("Retain", "Snapshot"), name
    volume = r["DataVolume"]
    assert (volume["DeletionPolicy"], volume["UpdateReplacePolicy"]) == ("Snapshot", "Snapshot")
    assert volume["Properties"]["Encrypted"] is True
    root = r["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"][0]
    assert root["Ebs"]["DeleteOnTermination"] is True  # nothing of value on it
    user_data = r["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    text = str(user_data)
    assert "attach-volume" in text and "/var/lib/jpixd" in text and "stack.env" in text
    plan = r["BackupPlan"]["Properties"]["BackupPlan"]["BackupPlanRule"][0]
    assert plan["ScheduleExpression"].startswith("cron(") and plan["Lifecycle"]
    assert "DataVolume" in str(r["BackupSelection"]["Properties"])


def test_alarms_reach_a_person() -> None:
    """Part 4: the alarm topic's key admits CloudWatch (and EventBridge), every service
    grant is conditioned on this account; a dead host, no healthy target, ELB 5xx, a full
    disk, a stale archive, stalled mail, silence and a failed pipeline all alarm."""
    r = _template()["Resources"]
    statements = r["Key"]["Properties"]["KeyPolicy"]["Statement"]
    services = [st for st in statements if "Service" in st["Principal"]]
    assert {"cloudwatch.amazonaws.com", "events.amazonaws.com", "sns.amazonaws.com",
            "ses.amazonaws.com"} <= {svc for st in services for svc in st["Principal"]["Service"]}
    assert all("aws:SourceAccount" in str(st.get("Condition")) for st in services)
    alarms = {v["Properties"]["MetricName"]: v["Properties"] for v in r.values()
              if v["Type"] == "AWS::CloudWatch::Alarm"}
    for metric in ("StatusCheckFailed", "StatusCheckFailed_System", "HealthyHostCount",
                   "HTTPCode_ELB_5XX_Count", "disk_used_percent", "DeliveryToS3.DataFreshness",
                   "jpixd_outbox_oldest_pending_age_seconds", "jpixd_sending_paused",
                   "ApproximateNumberOfMessagesVisible"):
        assert metric in alarms, metric
        assert alarms[metric]["AlarmActions"], metric
    silence = alarms["jpixd_sending_paused"]
    assert silence["TreatMissingData"] == "breaching" and silence["Statistic"] == "SampleCount"
    assert "recover" in str(alarms["StatusCheckFailed_System"]["AlarmActions"])
    rules = {k: v["Properties"] for k, v in r.items() if v["Type"] == "AWS::Events::Rule"}
    assert rules["PipelineFailedRule"]["EventPattern"]["detail"]["state"] == ["FAILED"]
    assert "AlarmTopic" in str(rules["PipelineFailedRule"]["Targets"])
    assert "codecommit" in str(rules["PushRule"]["EventPattern"])
    policy = r["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"cloudwatch.amazonaws.com", "events.amazonaws.com"} == \
        {st["Principal"]["Service"] for st in policy}
    agent = json.loads((ROOT / "deploy" / "cloudwatch" / "amazon-cloudwatch-agent.json")
                       .read_text())
    emf = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    assert emf["metric_namespace"] == "jpixd"
    assert "/var/lib/jpixd" in agent["metrics"]["metrics_collected"]["disk"]["resources"]
    nr = yaml.safe_load((ROOT / "deploy" / "newrelic" / "alerts.yml").read_text())
    assert any(c.get("expiration", {}).get("open_violation_on_expiration")
               for c in nr["conditions"]), "New Relic needs a loss-of-signal condition"


def test_ses_go_live_and_least_privilege_are_in_the_stack() -> None:
    """Parts 5 and 6."""
    r = _template()["Resources"]
    ses = r["SesDomain"]["Properties"]
    assert ses["DkimSigningAttributes"] and ses["MailFromAttributes"]["MailFromDomain"]
    records = r["SesDkimRecords"]["Properties"]["RecordSets"]
    assert [rec["Type"] for rec in records].count("CNAME") == 3
    assert {"MX", "TXT"} <= {rec["Type"] for rec in records}
    assert any("DMARC1" in str(rec["ResourceRecords"]) for rec in records)
    role = r["InstanceRole"]["Properties"]
    assert "ManagedPolicyArns" not in role  # no ssm:GetParameter on *
    statements = _unconditioned(role["Policies"][0]["PolicyDocument"]["Statement"])
    deny = next(st for st in statements if st["Effect"] == "Deny")
    assert "ssm:GetParameter" in deny["Action"] and "NotResource" in deny
    assert all(st["Resource"] != "*" or not any(a.startswith(("ssm:GetParameter", "s3:"))
                                                 for a in st["Action"]) for st in statements
               if st["Effect"] == "Allow" and isinstance(st["Action"], list))
    pipeline = r["PipelineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert all(st["Resource"] != "*" for st in pipeline)
    group = r["DeploymentGroup"]["Properties"]
    assert group["LoadBalancerInfo"]["TargetGroupInfoList"]
    assert group["DeploymentStyle"]["DeploymentOption"] == "WITH_TRAFFIC_CONTROL"
    session = r["SessionPreferences"]["Properties"]["Content"]["inputs"]
    assert session["cloudWatchLogGroupName"]
    lb = {a["Key"]: a["Value"] for a in r["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    assert lb["access_logs.s3.enabled"] == "true"
    env = r["Build"]["Properties"]["Environment"]["EnvironmentVariables"]
    assert {"Name": "CI", "Value": "true"} in env


def test_several_hosts_are_a_parameter_of_the_same_stack() -> None:
    """Issue 23, part 7: Hosts >= 2 makes an Auto Scaling group behind the ALB on RDS
    PostgreSQL (Multi-AZ, encrypted, backed up, protected, snapshotted on replace and
    delete, its password from SSM), deployed one host at a time out of the ALB; the single
    host's instance, volume and its backups exist only with Hosts = 1."""
    t = _template()
    hosts = t["Parameters"]["Hosts"]
    assert hosts["Default"] == 1 and hosts["MaxValue"] >= 2
    r = t["Resources"]
    several = {name for name, res in r.items() if res.get("Condition") == "SeveralHosts"}
    one = {name for name, res in r.items() if res.get("Condition") == "OneHost"}
    # The database also exists with one host and SharedDatabase (the move into it).
    with_db = {name for name, res in r.items() if res.get("Condition") == "HasDatabase"}
    assert t["Conditions"]["HasDatabase"] == ["SeveralHosts",
                                              ["SharedDatabase", "true"]]
    assert {"Database", "DatabaseSubnetGroup", "DatabaseSecurityGroup"} <= with_db
    assert "AutoScalingGroup" in several
    assert {"Instance", "DataVolume", "BackupSelection"} <= one
    db = r["Database"]
    assert (db["DeletionPolicy"], db["UpdateReplacePolicy"]) == ("Snapshot", "Snapshot")
    props = db["Properties"]
    assert props["Engine"] == "postgres" and props["MultiAZ"] is True
    assert props["StorageEncrypted"] is True and props["DeletionProtection"] is True
    assert props["BackupRetentionPeriod"] == "DbBackupRetentionDays"  # !Ref, days >= 7
    assert t["Parameters"]["DbBackupRetentionDays"]["MinValue"] >= 7
    assert props["PubliclyAccessible"] is False
    assert "{{resolve:ssm-secure:${SsmPrefix}/db-password}}" == props["MasterUserPassword"]
    assert not [p for p in t["Parameters"] if "password" in p.lower()]  # never a parameter
    ingress = r["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress == [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                        "SourceSecurityGroupId": "InstanceSecurityGroup"}]
    group = r["AutoScalingGroup"]["Properties"]
    assert group["MinSize"] == group["MaxSize"] == group["DesiredCapacity"] == "Hosts"
    assert group["HealthCheckType"] == "ELB" and group["TargetGroupARNs"] == ["PublicPages"]
    assert r["AutoScalingGroup"]["UpdatePolicy"]["AutoScalingRollingUpdate"]["MaxBatchSize"] == 1
    deploy = r["DeploymentGroup"]["Properties"]
    assert deploy["DeploymentConfigName"] == "CodeDeployDefault.OneAtATime"
    assert deploy["AutoScalingGroups"] == ["SeveralHosts", ["AutoScalingGroup"], "AWS::NoValue"]
    assert deploy["DeploymentStyle"]["DeploymentOption"] == "WITH_TRAFFIC_CONTROL"
    # The deployment's snapshot before a migration is allowed, on that database only.
    role = r["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    snap = next(st[1] for st in role if isinstance(st, list) and st[0] == "HasDatabase")
    assert snap["Action"] == ["rds:CreateDBSnapshot", "rds:DescribeDBSnapshots"]
    assert all("rds:" in arn for arn in snap["Resource"])
    # What a host of the group is told: the database, and the instance to snapshot.
    user_data = str(r["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"])
    assert "JPIXD_DATABASE_URL=postgresql://jpixd@${Database.Endpoint.Address}" in user_data
    assert "sslmode=require" in user_data and "JPIXD_DB_INSTANCE=${Database}" in user_data
    params = r["DatabaseParameters"]["Properties"]["Parameters"]
    assert params["rds.force_ssl"] == "1"
    assert {"RDS_STORAGE_ENCRYPTED", "RDS_MULTI_AZ_SUPPORT",
            "RDS_INSTANCE_DELETION_PROTECTION_ENABLED"} <= {
        v["Properties"]["Source"]["SourceIdentifier"] for v in r.values()
        if v["Type"] == "AWS::Config::ConfigRule"}
