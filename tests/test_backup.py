"""`jpixd backup` and `jpixd restore` (issue 22): a copy taken while the daemon sends,
restored into a fresh state, loses no sent or pending row; a restore refuses a running
daemon, a damaged copy and a newer schema, and keeps the database it replaces; S3 (moto)
as a destination, with only the newest `keep` copies kept."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from prometheus_client import CollectorRegistry

from jpixd.config import load_mapping
from jpixd.fanout import Policy, planner
from jpixd.model import JST, Change, DeliveryState, Notice, NoticeKind, NoticeStatus
from jpixd.store import Store
from tests.conftest import base_mapping, jpixd_command, toml_dumps


def _config(tmp: Path, state: str, **extra: Any) -> Path:
    path = tmp / f"{state}.toml"
    path.write_text(toml_dumps(base_mapping(tmp, state_dir=str(tmp / state),
                                            sending={"concurrency": 4}, **extra)))
    return path


def _states(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return {int(i): str(s) for i, s in conn.execute("SELECT id, state FROM deliveries")}


async def test_a_backup_taken_while_sending_restores_every_row(tmp_path: Path) -> None:
    from jpixd.app import Daemon

    config = _config(tmp_path, "live", mail={
        "from": "noc@example.jp", "transport": "file", "file": {"dir": str(tmp_path / "out")},
        "ses": {"max_send_rate": 400}})
    import tomllib
    cfg = load_mapping(tomllib.loads(config.read_text()), base_dir=tmp_path, env={})
    daemon = Daemon(cfg, registry=CollectorRegistry())
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 15)
    rt = daemon.runtime
    assert rt is not None
    try:
        now = rt.clock()
        from jpixd.model import Subscriber
        await rt.store.import_subscribers(
            [(Subscriber(email=f"noc{i}@isp{i % 40}.example.jp"), frozenset({"email"}))
             for i in range(1500)], now)
        n = Notice(source="w", external_id="F1", carrier="east", kind=NoticeKind.FAILURE,
                   status=NoticeStatus.OCCURRED, title="故障")
        await rt.store.record_revision(n, revision="r1", change=Change.NEW, now=now,
                                       planner=planner(n, Change.NEW, now, Policy(tz=JST)))
        rt.wake("sender")
        sender = rt.loops["sender"]
        for _ in range(200):  # until sending is well under way
            await asyncio.wait_for(sender.next_round(), 10)
            if (await rt.store.delivery_counts())[DeliveryState.SENT] >= 200:
                break
        sent_before = {d for d, s in _states(cfg.database_path).items() if s == "sent"}
        code, out, err = await jpixd_command("backup", str(tmp_path / "backups"), "--config",
                                      str(config), cwd=tmp_path)
        assert code == 0, err
        assert "backed up to" in out
        counts = await rt.store.delivery_counts()
        assert counts[DeliveryState.PENDING] + counts[DeliveryState.SENDING] > 0, \
            "the backup was meant to be taken mid-send"
    finally:
        rt.supervisor.stop()
        await asyncio.wait_for(task, 30)
    live = _states(cfg.database_path)

    # A fresh state, restored from the folder (its newest copy).
    fresh = _config(tmp_path, "fresh")
    code, out, err = await jpixd_command("restore", str(tmp_path / "backups"), "--config",
                                  str(fresh), cwd=tmp_path)
    assert code == 0, err
    restored = _states(tmp_path / "fresh" / "jpixd.sqlite3")
    assert set(restored) == set(live) and len(restored) == 1500  # no row lost
    sent = {d for d, s in restored.items() if s == "sent"}
    assert sent_before <= sent <= {d for d, s in live.items() if s == "sent"}
    assert set(restored.values()) <= {"sent", "pending", "sending", "retry"}
    # The restored state opens and runs: a store on it sees the same.
    store = await Store.open(tmp_path / "fresh" / "jpixd.sqlite3")
    try:
        total = sum((await store.delivery_counts()).values())
        assert total == 1500
    finally:
        await store.close()
    [copy] = list((tmp_path / "backups").iterdir())
    assert oct(copy.stat().st_mode & 0o777) == "0o640"


async def test_a_restore_refuses_a_running_daemon_a_damaged_copy_and_keeps_the_old(
        tmp_path: Path, daemon_process: Any) -> None:
    config = _config(tmp_path, "state")
    code, _, err = await jpixd_command("migrate", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    code, _, err = await jpixd_command("backup", str(tmp_path / "b"), "--config", str(config),
                                cwd=tmp_path)
    assert code == 0, err
    p = daemon_process(["run", "--config", str(config)])
    p.wait_for_event("jpixd ready")
    code, _, err = await jpixd_command("restore", str(tmp_path / "b"), "--config", str(config),
                                cwd=tmp_path)
    assert code == 2 and "in use by another jpixd" in err
    p.proc.send_signal(signal.SIGTERM)
    assert p.finish() == 0
    damaged = tmp_path / "b" / "jpixd-20991231T000000.000Z-v1.sqlite3"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    code, _, err = await jpixd_command("restore", str(damaged), "--config", str(config),
                                cwd=tmp_path)
    assert code == 2 and ("damaged" in err or "not a database" in err), err
    damaged.unlink()
    newer = tmp_path / "b" / "jpixd-20991231T000000.000Z-v999.sqlite3"
    with sqlite3.connect(newer) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER, older_ok INTEGER)")
        conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    code, _, err = await jpixd_command("restore", str(newer), "--config", str(config), cwd=tmp_path)
    assert code == 2 and "newer than this program knows" in err
    newer.unlink()
    code, out, err = await jpixd_command("restore", str(tmp_path / "b"), "--config", str(config),
                                  cwd=tmp_path)
    assert code == 0, err
    kept = [p for p in (tmp_path / "state").iterdir() if ".before-restore-" in p.name]
    assert len(kept) == 1 and str(kept[0]) in out


async def test_backups_to_s3_keep_the_newest_and_restore_from_the_prefix(
        tmp_path: Path, moto_url: str) -> None:
    kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": moto_url}
    async with get_session().create_client("s3", **kw) as s3:
        await s3.create_bucket(Bucket="jpixd-backups",
                               CreateBucketConfiguration={
                                   "LocationConstraint": "ap-northeast-1"})
        backup = {"region": "ap-northeast-1", "endpoint_url": moto_url, "keep": 2}
        config = _config(tmp_path, "state", backup=backup)
        code, _, err = await jpixd_command("migrate", "--config", str(config), cwd=tmp_path)
        assert code == 0, err
        for label in ("one", "two", "three"):
            code, out, err = await jpixd_command("backup", "s3://jpixd-backups/host-a", "--label",
                                          label, "--config", str(config), cwd=tmp_path)
            assert code == 0, err
            assert out.strip().endswith(f"-{label}.sqlite3")
        listed = await s3.list_objects_v2(Bucket="jpixd-backups", Prefix="host-a/")
        names = sorted(o["Key"] for o in listed["Contents"])
        assert len(names) == 2 and names[0].endswith("-two.sqlite3")
        fresh = _config(tmp_path, "fresh", backup=backup)
        code, out, err = await jpixd_command("restore", "s3://jpixd-backups/host-a", "--config",
                                      str(fresh), cwd=tmp_path)
        assert code == 0, err
        assert "-three.sqlite3" in out
        with sqlite3.connect(tmp_path / "fresh" / "jpixd.sqlite3") as conn:
            assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] > 10
