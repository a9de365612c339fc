"""Configuration: every bad value is named by its key path, all at once, and stops a start."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jpixd import cli
from jpixd.config import (
    BouncesConfig,
    ConfigError,
    RetentionConfig,
    SendingConfig,
    SesConfig,
    SmtpConfig,
    SourceConfig,
    SupervisorConfig,
    load_default,
    load_mapping,
    load_path,
    parse_duration,
    web_keys,
)
from jpixd.reload import plan
from tests.conftest import ROOT, base_mapping, make_config, toml_dumps


def errors_of(tmp_path: Path, env: dict[str, str] | None = None, **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_mapping(base_mapping(tmp_path, **overrides), base_dir=tmp_path, env=env or {})
    return info.value.errors


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("24h", 86400), ("7d", 604800), ("1h30m", 5400),
    ("250ms", 0.25), ("1.5s", 1.5),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "6O s", "s", "1w", "-5s", "5 m", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_embedded_default_is_valid(tmp_path: Path) -> None:
    cfg = load_default(base_dir=tmp_path, env={})
    assert cfg.state_dir == tmp_path / "var"
    assert cfg.database_path == tmp_path / "var" / "jpixd.sqlite3"
    assert cfg.mail.transport == "file"
    assert cfg.http.listen.port == 8080 and cfg.http.listen.host == "127.0.0.1"
    assert cfg.http.generate_admin_token


def test_production_example_is_valid(tmp_path: Path) -> None:
    env = {"JPIXD_ADMIN_TOKEN": "t" * 32, "JPIXD_BACKLOG_API_KEY": "k" * 32,
           "JPIXD_WEB_SECRET_KEYS": "n" * 32 + "\n" + "o" * 32}
    cfg = load_path(ROOT / "etc" / "jpixd.toml", env=env)
    assert cfg.mail.transport == "ses"
    assert cfg.web.base_url == "https://notice.example.jp" and cfg.http.public_listen
    # The ALB health-checks /readyz on the operator port (deploy/cloudformation).
    assert (cfg.http.listen.host, cfg.http.listen.port) == ("0.0.0.0", 8080)
    assert web_keys(cfg.web.secret_keys) == ["n" * 32, "o" * 32]
    assert cfg.backlog is not None and cfg.backlog.api_key.get() == "k" * 32
    assert cfg.bounces.pause_bounce_rate < 0.05
    assert {s.kind for s in cfg.sources} >= {"ntt-east", "ntt-west"}


def test_every_bad_value_is_reported_with_its_key_path(tmp_path: Path) -> None:
    errs = errors_of(
        tmp_path,
        shutdown_timeout="soon",
        timezone="Mars/Olympus",
        http={"listen": "localhost", "admin_token": "literal-secret"},
        sources=[
            {"name": "east", "kind": "ntt-east", "url": "https://example.jp/e"},
            {"name": "east", "kind": "rsss", "url": "ftp://x", "interval": "6O s"},
            {"name": "w", "kind": "rss", "url": "https://example.jp/w", "carrier": "north"},
        ],
        mail={"from": "not-an-address", "charset": "shift_jis", "transport": "smtp",
              "ses": {"max_send_rate": -3, "rate_safety": 1.5}},
        sending={"concurrency": 0, "reminder_before": ["24h", "tomorrow"], "burst": "many"},
        bounces={"pause_bounce_rate": 0.08, "warn_bounce_rate": 0.09, "queue_url": "sqs"},
        backlog={"base_url": "https://space.backlog.jp", "project_key": "NOC"},
        colour="blue",
    )
    expected = [
        'shutdown_timeout: \'soon\' is not a duration (e.g. "30s", "5m", "24h", "7d")',
        "timezone: 'Mars/Olympus' is not a known time zone",
        "http.listen: 'localhost' is not host:port",
        "http.admin_token: secrets are not written in the config file",
        "sources[1].name: 'east' is used by another source",
        "sources[1].kind: 'rsss' is not one of rss, atom, ntt-east, ntt-west, json",
        "sources[1].url: 'ftp://x' must be a URL with scheme http or https or file",
        "sources[1].interval: '6O s' is not a duration",
        "sources[2].carrier: 'north' is not one of east, west",
        "mail.from: 'not-an-address' is not an email address",
        "mail.charset: 'shift_jis' is not one of iso-2022-jp, utf-8",
        "mail.smtp.host: is required when mail.transport = \"smtp\"",
        "mail.ses.max_send_rate: -3 must be \"auto\" or a number above 0",
        "mail.ses.rate_safety: 1.5 must be at most 1.0",
        "sending.concurrency: 0 is below the minimum 1",
        "sending.reminder_before[1]: 'tomorrow' is not a duration",
        "sending.burst: 'many' must be a whole number of at least 1",
        "bounces.pause_bounce_rate: 0.08 must be below SES's review threshold 0.05",
        "bounces.warn_bounce_rate: must be below pause_bounce_rate",
        "bounces.queue_url: 'sqs' must be a URL with scheme http or https",
        "backlog.api_key_file: no API key",
        "backlog.issue_type: is required",
        "colour: unknown key",
    ]
    for want in expected:
        assert any(e.startswith(want) for e in errs), f"missing {want!r} in {errs}"
    assert len(errs) == len(expected), errs


def test_a_source_without_a_carrier_is_refused_unless_implied(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, sources=[{"name": "feed", "kind": "rss",
                                         "url": "https://example.jp/rss"}])
    assert errs == ["sources[0].carrier: is required for kind 'rss' (\"east\" or \"west\")"]
    errs = errors_of(tmp_path, sources=[{"name": "e", "kind": "ntt-east", "carrier": "west",
                                         "url": "https://example.jp/"}])
    assert errs == ["sources[0].carrier: 'west' contradicts kind 'ntt-east'"]


def test_secrets_come_from_files_and_environment_never_the_file(tmp_path: Path) -> None:
    key = tmp_path / "backlog.key"
    key.write_text("abc-secret-key\n")
    backlog = {"base_url": "https://space.backlog.jp", "project_key": "NOC",
               "issue_type": "Bug", "api_key_file": str(key)}
    cfg = load_mapping(base_mapping(tmp_path, backlog=backlog), base_dir=tmp_path, env={})
    assert cfg.backlog is not None and cfg.backlog.api_key.get() == "abc-secret-key"
    assert "abc-secret-key" not in repr(cfg)

    backlog_env = {**backlog, "api_key": "env:MY_KEY"}
    del backlog_env["api_key_file"]
    cfg = load_mapping(base_mapping(tmp_path, backlog=backlog_env), base_dir=tmp_path,
                       env={"MY_KEY": "from-env"})
    assert cfg.backlog is not None and cfg.backlog.api_key.get() == "from-env"

    backlog_missing = {**backlog, "api_key_file": str(tmp_path / "nope")}
    errs = errors_of(tmp_path, backlog=backlog_missing)
    assert errs == [f"backlog.api_key_file: cannot read '{tmp_path / 'nope'}': "
                    "No such file or directory"]

    backlog_ssm = {**backlog, "api_key": "ssm:/jpixd/backlog"}
    del backlog_ssm["api_key_file"]
    cfg = load_mapping(base_mapping(tmp_path, backlog=backlog_ssm), base_dir=tmp_path, env={})
    assert cfg.backlog is not None and cfg.backlog.api_key.needs_ssm


def test_admin_token_is_required_outside_the_embedded_default(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, http={"listen": "127.0.0.1:0"})
    assert errs[0].startswith("http.admin_token_file: no admin token")
    cfg = load_mapping(base_mapping(tmp_path, http={"listen": "127.0.0.1:0"}),
                       base_dir=tmp_path, env={"JPIXD_ADMIN_TOKEN": "from-env-token"})
    assert cfg.http.admin_token is not None
    assert cfg.http.admin_token.get() == "from-env-token"


def test_toml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("state_dir = \n")
    with pytest.raises(ConfigError) as info:
        load_path(path)
    assert info.value.errors[0].startswith(f"{path}: not valid TOML")


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "jpixd.toml"
    path.write_text(toml_dumps(base_mapping(tmp_path, **overrides)), encoding="utf-8")
    return path


def test_check_config_exits_non_zero_and_lists_every_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, sources=[{"name": "e", "kind": "ntt-east", "url": "x",
                                            "interval": "6O s"}])
    assert cli.main(["check-config", "--config", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "sources[0].url: 'x' must be a URL" in err
    assert "sources[0].interval: '6O s' is not a duration" in err


def test_check_config_accepts_a_good_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert cli.main(["check-config", "--config", str(path)]) == cli.EXIT_OK
    assert "is valid" in capsys.readouterr().out


def test_run_refuses_to_start_on_a_bad_config(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, sending={"max_attempts": "lots"})
    assert cli.main(["run", "--config", str(path)]) == cli.EXIT_CONFIG
    assert "sending.max_attempts: 'lots' is not an integer" in capsys.readouterr().err
    # Nothing was started: no database was created.
    assert not (tmp_path / "state" / "jpixd.sqlite3").exists()


def test_config_that_means_what_it_says(tmp_path: Path) -> None:
    """Issue 13: the usual way of writing a sender, a short interval alone, and a
    database_url that is honoured instead of validated and ignored."""
    cfg = make_config(tmp_path, mail={"from": "NOC 運用 <noc@example.jp>", "transport": "file"},
                      sources=[{"name": "quick", "kind": "json", "carrier": "east",
                                "url": "https://e.example/feed.json", "interval": "1s"}],
                      database_url=f"sqlite:///{tmp_path}/elsewhere.sqlite3")
    assert (cfg.mail.from_addr, cfg.mail.from_name) == ("noc@example.jp", "NOC 運用")
    assert cfg.sources[0].timeout.total_seconds() == 1
    assert cfg.database_path == tmp_path / "elsewhere.sqlite3"
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, mail={"from": "noc at example", "transport": "file"})
    assert "from_name sets the name" in str(err.value)
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, mail={"from": "A <a@example.jp>", "from_name": "B",
                                    "transport": "file"})
    assert "give the name once" in str(err.value)


def test_a_reload_changes_what_it_can_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    old = make_config(tmp_path)
    new = make_config(tmp_path, http={"listen": "127.0.0.1:9999",
                                      "admin_token_file": str(tmp_path / "admin-token")},
                      logging={"format": "json", "level": "debug"},
                      sending={"concurrency": 2})
    p = plan(old, new)
    assert set(p.live) == {"logging", "sending"} and p.restart == ("http",)
    assert p.effective.http.listen == old.http.listen  # kept as it runs
    assert p.effective.logging.level == "debug"


def test_how_a_reload_takes_each_setting_is_declared_with_it(tmp_path: Path) -> None:
    """Issue 24, part 4: the reload plan reads the declarations (`restart`, `live` in
    jpixd.config) instead of a hand-kept list: nested restart-only settings are named by
    their group and kept as they run, a live secret inside a section is named by its path,
    and the database password (the pool keeps the one it opened with) waits for a start,
    which it silently did before."""
    from dataclasses import fields

    from jpixd.config import Config, HttpConfig, MailConfig

    how = {f.name: f.metadata.get("reload") for f in fields(Config)}
    assert how["state_dir"] == how["database_url"] == how["archive"] == "restart"
    assert how["sources"] == how["mail"] == how["web"] == "live"
    assert {f.name for f in fields(HttpConfig) if f.metadata.get("group") == "http"} == {
        "listen", "public_listen", "header_timeout", "body_timeout", "max_connections"}
    assert {f.name for f in fields(MailConfig)
            if f.metadata.get("reload") == "restart"} == {"transport", "smtp", "file"}
    (tmp_path / "pw-old").write_text("old-password")
    (tmp_path / "pw-new").write_text("new-password")
    (tmp_path / "token2").write_text("t" * 40)
    old = make_config(tmp_path, database_password_file=str(tmp_path / "pw-old"))
    new = make_config(tmp_path, database_password_file=str(tmp_path / "pw-new"),
                      mail={"from": "noc@example.jp", "transport": "smtp",
                            "from_name": "工事・故障情報", "smtp": {"host": "smtp.example.jp"}},
                      bounces={"queue_url": "https://sqs.example/q", "guard_min_volume": 10},
                      http={"listen": "127.0.0.1:0",
                            "admin_token_file": str(tmp_path / "token2")})
    p = plan(old, new)
    assert p.restart == ("database_password", "mail.transport", "bounces.queue")
    assert set(p.live) == {"http.admin_token", "mail", "bounces"}
    eff = p.effective
    assert eff.database_password == old.database_password
    assert (eff.mail.transport, eff.mail.smtp) == (old.mail.transport, old.mail.smtp)
    assert eff.mail.from_name == "工事・故障情報"  # the live part of [mail] taken
    assert eff.bounces.queue_url is None and eff.bounces.guard_min_volume == 10
    assert eff.http.admin_token == new.http.admin_token


def test_defaults_are_written_once() -> None:
    """Issue 13: every default was written twice (dataclass and loader), free to drift.
    The loader now takes them from the dataclasses; a config that says nothing is the
    dataclasses' defaults, section by section."""
    cfg = load_mapping({"mail": {"from": "n@example.jp"}, "sources": [
        {"name": "s", "kind": "json", "carrier": "east", "url": "https://e.example/f"}]},
        base_dir=Path("/tmp"), env={"JPIXD_ADMIN_TOKEN": "x" * 20})
    assert cfg.sending == SendingConfig() and cfg.bounces == BouncesConfig()
    assert cfg.supervisor == SupervisorConfig() and cfg.retention == RetentionConfig()
    assert cfg.mail.ses == SesConfig() and cfg.mail.smtp == SmtpConfig()
    assert cfg.sources == (SourceConfig(name="s", kind="json", url="https://e.example/f",
                                        carrier="east"),)


def test_web_keys_as_a_list_of_references(tmp_path: Path) -> None:
    """SPEC §3: secret_keys is a list (first signs, all verify), each from ssm: or env."""
    web: dict[str, Any] = {"base_url": "https://n.example.jp",
                           "secret_keys": ["env:NEW", "env:OLD", "ssm:/jpixd/web-key-2024"]}
    data: dict[str, Any] = {"http": {"admin_token": "env:T", "public_listen": "127.0.0.1:8081"},
                            "mail": {"from": "noc@example.jp", "transport": "file"}, "web": web}
    cfg = load_mapping(data, base_dir=tmp_path, env={"T": "t" * 20, "NEW": "n" * 32,
                                                      "OLD": "o" * 32})
    assert [k.origin for k in cfg.web.secret_keys] == ["env:NEW", "env:OLD",
                                                       "ssm:/jpixd/web-key-2024"]
    assert web_keys(cfg.web.secret_keys[:2]) == ["n" * 32, "o" * 32]
    with pytest.raises(ConfigError) as err:
        load_mapping({**data, "web": {**web, "secret_keys": ["a-literal-key" * 3]}},
                     base_dir=tmp_path, env={"T": "t" * 20})
    assert "web.secret_keys[0]: each key is a reference" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_mapping({**data, "web": {"base_url": "https://n.example.jp",
                                      "secret_keys": ["env:SHORT"]}},
                     base_dir=tmp_path, env={"T": "t" * 20, "SHORT": "s" * 10})
    assert "web.secret_keys: key 1 is shorter than 32 characters" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_mapping({**data, "web": {"base_url": "https://n.example.jp"}},
                     base_dir=tmp_path, env={"T": "t" * 20})
    assert "web.secret_keys: links in mail and the public pages need keys" in str(err.value)


def test_a_secret_rotated_behind_the_same_file_is_a_change_for_reload(tmp_path: Path) -> None:
    """The file or parameter stays, its content changes: a reload must see it (the
    Backlog key and the admin token as much as the link keys)."""
    key = tmp_path / "backlog-key"
    backlog = {"base_url": "https://s.backlog.jp", "api_key_file": str(key),
               "project_key": "NOC", "issue_type": "障害", "priority": "中"}
    key.write_text("k" * 32)
    old = make_config(tmp_path, backlog=backlog)
    key.write_text("n" * 32)
    data = base_mapping(tmp_path, backlog=backlog)  # (writes the old admin token)
    (tmp_path / "admin-token").write_text("rotated-admin-token-0123456789\n")
    new = load_mapping(data, base_dir=tmp_path, env={})
    p = plan(old, new)
    assert {"backlog", "http.admin_token"} <= set(p.live)
    assert p.effective.backlog is not None and p.effective.backlog.api_key.get() == "n" * 32
    assert "k" * 32 not in repr(old)  # compared, never shown


def test_each_setting_is_declared_once_and_the_loader_walks_the_declarations(
        tmp_path: Path) -> None:
    """Issue 24, part 4: a setting's type, default and range are its field's; the loader
    reads every field not marked `custom` from that declaration alone. Each section's
    fields are either read by the walk or marked, and a range written on a field is the
    one a file is held to, with its key path."""
    import dataclasses
    import typing

    from jpixd import config

    sections = [c for c in vars(config).values()
                if dataclasses.is_dataclass(c) and isinstance(c, type)
                and c.__name__.endswith("Config") and c is not config.Config]
    assert len(sections) >= 15
    for cls in sections:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("custom") or cls in (config.FileTransportConfig,):
                continue
            # The walk has a reader for the type (a TypeError would name the field).
            section = config._Section({}, "x", [], {}, tmp_path)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                continue  # required fields are read by their section's code
            config._read(section, f.name, hints[f.name], config.defaults(cls)(f.name),
                         f.metadata)
            assert section.errors == [], (cls.__name__, f.name)
    # A range declared on the field is what the file is held to.
    errs = errors_of(tmp_path, channels={"per_host_rate": 0, "pause_after_gone": 0,
                                         "allowed_networks": ["10.0.0.0/33"],
                                         "backoff": "2h", "backoff_max": "1h"},
                     http={"max_connections": 3}, web={"ipv6_client_prefix": 129},
                     logging={"level": "loud"})
    assert sorted(errs) == sorted([
        "channels.per_host_rate: 0 must be above 0.0",
        "channels.pause_after_gone: 0 is below the minimum 1",
        "channels.allowed_networks[0]: '10.0.0.0/33' is not a network (e.g. 10.1.0.0/16)",
        "channels.backoff_max: must not be shorter than backoff",
        "http.max_connections: 3 is below the minimum 4",
        "web.ipv6_client_prefix: 129 is above the maximum 128",
        "logging.level: 'loud' is not one of debug, info, warning, error",
    ]), errs
    # And a config that says nothing is every section's own defaults.
    cfg = make_config(tmp_path)
    assert cfg.channels == config.ChannelsConfig() and cfg.cluster == config.ClusterConfig()
    assert cfg.backup == config.BackupConfig() and cfg.supervisor == config.SupervisorConfig()
