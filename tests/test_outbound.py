"""The one way out (issue 24, part 1): one rule decides the send rate, the same at start
and on every reload, and one place publishes it. A reload that touched [mail],
[sending], the timezone or [web] once removed the limit of a plain SMTP server's "auto"
rate altogether."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from jpixd.config import Config, SesConfig, load_mapping
from jpixd.mail.bucket import TokenBucket
from jpixd.mail.outbound import (
    DEFAULT_SMTP_RATE,
    SES_STARTING_RATE,
    Outbound,
    RatePolicy,
    SendingSwitch,
    SwitchStore,
    rate_policy,
)
from jpixd.mail.transports.file import FileTransport
from jpixd.metrics import Metrics
from tests.conftest import base_mapping, free_port, running_daemon


def test_one_rule_for_the_rate() -> None:
    auto, fixed = SesConfig(), SesConfig(max_send_rate=25.0, rate_safety=0.8)
    assert rate_policy(auto, "ses", True) == RatePolicy(SES_STARTING_RATE, True, 0.9)
    assert rate_policy(auto, "smtp", True) == RatePolicy(SES_STARTING_RATE, True, 0.9)
    assert rate_policy(auto, "smtp", False) == RatePolicy(DEFAULT_SMTP_RATE, False, 0.9)
    assert rate_policy(auto, "file", False) == RatePolicy(None, False, 0.9)
    for transport in ("ses", "smtp", "file"):
        assert rate_policy(fixed, transport, transport != "file") == \
            RatePolicy(25.0, False, 0.8)


def test_a_reload_keeps_the_rate_read_from_the_quota(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    switch = SendingSwitch(cast(SwitchStore, None), metrics)  # not paused or resumed here
    out = Outbound(FileTransport(tmp_path), TokenBucket(None), metrics,
                   RatePolicy(SES_STARTING_RATE, True), switch)
    out.bucket.set_rate(14 * 0.9)  # as a quota read sets it
    out.apply(RatePolicy(SES_STARTING_RATE, True))  # a reload of the same "auto"
    assert out.bucket.rate == pytest.approx(12.6)
    out.apply(RatePolicy(30.0, False))  # a number now
    assert out.bucket.rate == 30.0
    assert metrics.registry.get_sample_value("jpixd_send_rate_limit_per_second") == 30.0
    out.apply(RatePolicy(None, False))  # files: no limit, +Inf on the gauge
    assert metrics.registry.get_sample_value("jpixd_send_rate_limit_per_second") == \
        float("inf")


def _smtp_mapping(tmp_path: Path, **mail: Any) -> dict[str, Any]:
    return base_mapping(tmp_path, mail={
        "from": "noc@example.jp", "transport": "smtp",
        "smtp": {"host": "127.0.0.1", "port": free_port(), "starttls": False}, **mail})


async def test_a_reload_of_an_smtp_daemon_keeps_its_rate(tmp_path: Path) -> None:
    versions: list[dict[str, Any]] = []

    def reloaded() -> Config:
        return load_mapping(versions.pop(0), base_dir=tmp_path, env={})

    registry = CollectorRegistry()
    cfg = load_mapping(_smtp_mapping(tmp_path), base_dir=tmp_path, env={})
    async with running_daemon(cfg, registry=registry, reload_from=reloaded) as d:
        def rate() -> float | None:
            return registry.get_sample_value("jpixd_send_rate_limit_per_second")

        assert rate() == DEFAULT_SMTP_RATE
        # [mail] and [sending] change, the rate stays "auto": still a polite 10/s.
        changed = _smtp_mapping(tmp_path, from_name="工事・故障情報")
        changed["sending"] = {"concurrency": 2}
        changed["mail"]["smtp"]["port"] = cfg.mail.smtp.port
        versions.append(changed)
        await d.daemon._reload()
        assert rate() == DEFAULT_SMTP_RATE
        numbered = {**changed, "mail": {**changed["mail"], "ses": {"max_send_rate": 3}}}
        versions.append(numbered)
        await d.daemon._reload()
        assert rate() == 3.0
        versions.append(changed)
        await d.daemon._reload()
        assert rate() == DEFAULT_SMTP_RATE


async def test_one_switch_pauses_and_shows_it(tmp_path: Path) -> None:
    """Pause and resume change, read and show in one place: the gauge follows every
    change made through it, and a change made elsewhere (another host) once told."""
    from datetime import UTC, datetime

    from jpixd.store import Store

    store = await Store.open(tmp_path / "s.sqlite3")
    try:
        await store.migrate(datetime(2026, 12, 6, tzinfo=UTC))
        metrics = Metrics(CollectorRegistry())
        switch = SendingSwitch(store, metrics)
        now = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)

        def gauge() -> float | None:
            return metrics.registry.get_sample_value("jpixd_sending_paused")

        assert not await switch.paused() and gauge() == 0
        state = await switch.set(paused=True, reason="確認中", actor="admin", now=now)
        assert state.paused and await switch.paused() and gauge() == 1
        # Another host resumes: read afresh once told (NOTIFY), not before.
        await store.set_sending(paused=False, reason=None, actor="admin", now=now)
        assert await switch.paused()
        switch.changed_elsewhere()
        assert not await switch.paused() and gauge() == 0
    finally:
        await store.close()
