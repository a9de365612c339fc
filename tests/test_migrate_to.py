"""`jpixd migrate-to postgresql://…` (issue 23, part 7): a single host's SQLite state
moved into an empty PostgreSQL, as the runbook does it, with the real commands. Every
subscriber, change, suppression, notice, delivery state, event, case, quarantined input
and self-service mail reads the same through the PostgreSQL store; the mail that was due
is sent once from there and the mail already sent is not; the old database refuses to run;
and whatever is refused changes nothing."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from jpixd.config import Config, load_mapping
from jpixd.fanout import Policy, planner
from jpixd.model import (
    JST,
    Change,
    DeliveryState,
    Notice,
    NoticeKind,
    NoticeStatus,
    SourceState,
    Subscriber,
)
from jpixd.selfmail import Limits
from jpixd.statelock import hold
from jpixd.store import AnyStore
from tests.conftest import base_mapping, jpixd_command, on_backend, toml_dumps
from tests.pgserver import needs_postgres, postgres_server, postgres_url  # noqa: F401
from tests.sesnotes import record_bounce

pytestmark = needs_postgres
T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def _config(tmp: Path, name: str, **extra: Any) -> tuple[Path, Config]:
    path = tmp / f"{name}.toml"
    path.write_text(toml_dumps(base_mapping(tmp, state_dir=str(tmp / name),
                                            mail={"from": "noc@example.jp", "transport": "file",
                                                  "file": {"dir": str(tmp / f"out-{name}")}},
                                            **extra)), encoding="utf-8")
    return path, load_mapping(tomllib.loads(path.read_text()), base_dir=tmp, env={})


async def _a_lived_in_state(store: AnyStore) -> None:
    """What a single host holds after some weeks: subscribers (one changed, one gone, one
    with a legacy id), a failure mailed to some, pending, retried and failed to others,
    a bounce that suppressed an address and opened a case, a paused-and-resumed sender,
    a quarantined feed item, a source's state and a self-service mail."""
    rows = [(Subscriber(email=f"noc{i}@isp{i % 7}.example.jp", name=f"担当{i}",
                        carriers=("east",), legacy_id=f"L{i}" if i == 3 else ""),
             frozenset({"email", "name", "carriers", "legacy_id"})) for i in range(40)]
    await store.import_subscribers(rows, T0)
    first = await store.subscriber_by_email("noc1@isp1.example.jp")
    gone = await store.subscriber_by_email("noc2@isp2.example.jp")
    assert first is not None and gone is not None and first.id is not None
    assert gone.id is not None
    await store.update_subscriber(first.id, {"organization": "東日本ネット"}, T0)
    await store.delete_subscriber(gone.id, T0, actor="self")
    n = Notice(source="east", external_id="F-1", carrier="east", kind=NoticeKind.FAILURE,
               status=NoticeStatus.OCCURRED, title="通信障害（東京都）", body="詳細は調査中",
               prefectures=("東京都",), localities=("千代田区",), starts_at=T0)
    await store.record_revision(n, revision="r1", change=Change.NEW, now=T0, key="k-F-1",
                                planner=planner(n, Change.NEW, T0, Policy(tz=JST)))
    pending, _ = await store.list_deliveries(state="pending", limit=1000)
    assert len(pending) == 39
    for d in pending[:20]:
        await store.mark_sent(d.id, T0, transport="ses", message_id=f"<m{d.id}@jpixd>",
                              ses_message_id=f"ses-{d.email}")
    await store.mark_retry(pending[20].id, T0, T0 + timedelta(minutes=1), "421 try later")
    await store.mark_final(pending[21].id, T0, DeliveryState.FAILED, "550 no such user")
    await record_bounce(store, pending[0].email, T0 + timedelta(minutes=5))
    await store.set_sending(paused=True, reason="確認中", actor="console", now=T0)
    await store.set_sending(paused=False, reason=None, actor="console", now=T0)
    await store.quarantine(origin="feed:east", ref="item-9", reason="no date",
                           payload="<item>\0</item>", now=T0)
    await store.save_source_state("east", SourceState(etag='"abc"', baseline_done=True,
                                                      last_success_at=T0))
    await store.queue_self_mail("confirm", first.id, first.email, T0,
                                Limits(per_mailbox_hour=3, per_hour=100, bounce_limit=10),
                                T0 - timedelta(hours=1))


async def _everything(store: AnyStore) -> dict[str, Any]:
    """The state as the console and the API read it."""
    notices, _ = await store.list_notices(limit=1000)
    return {
        "subscribers": await store.all_subscribers(),
        "listed": await store.list_subscribers(limit=1000),
        "changes": await store.subscriber_changes(limit=1000),
        "suppressions": await store.list_suppressions(limit=1000),
        "notices": notices,
        "revisions": [await store.revisions(n.id) for n in notices],
        "deliveries": await store.list_deliveries(limit=1000),
        "counts": await store.delivery_counts(),
        "events": await store.list_events(limit=1000),
        "tickets": await store.list_tickets(limit=1000),
        "quarantine": await store.list_quarantine(limit=1000),
        "source": await store.source_state("east"),
        "sending": await store.sending_state(),
        "self_mails": await store.list_self_mails(limit=1000),
        "legacy": await store.subscriber_by_legacy_id("L3"),
    }


async def _row_counts(store_db: Path, url: str) -> tuple[dict[str, int], dict[str, int]]:
    import sqlite3
    lite = sqlite3.connect(store_db)
    try:
        names = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'table' AND name NOT LIKE 'sqlite_%'")]
        a = {t: lite.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in names
             if t != "schema_migrations"}
    finally:
        lite.close()
    conn = await asyncpg.connect(url)
    try:
        b = {t: await conn.fetchval(f'SELECT COUNT(*) FROM "{t}"') for t in a}
    finally:
        await conn.close()
    return a, b


async def test_a_single_host_moves_to_postgresql_and_nothing_is_lost_or_sent_twice(
        tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    from jpixd.app import Daemon, open_store

    old_path, old = _config(tmp_path, "single")
    store = await open_store(old, lambda: T0)
    try:
        await _a_lived_in_state(store)
        before = await _everything(store)
    finally:
        await store.close()
    assert before["suppressions"][1] == 1 and before["tickets"][1] == 1
    assert before["counts"][DeliveryState.SENT] == 20

    # Checked, not done: the plan, and nothing in PostgreSQL.
    code, out, err = await jpixd_command("migrate-to", postgres_url, "--config", str(old_path),
                                  cwd=tmp_path)
    assert code == 0, err
    assert "subscribers: 40 rows" in out and "nothing written" in out
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM subscribers") == 0
    finally:
        await conn.close()

    code, out, err = await jpixd_command("migrate-to", postgres_url, "--config", str(old_path),
                                  "--yes", cwd=tmp_path)
    assert code == 0, err
    # The 39 notice mails and the confirmation, one outbox.
    assert "deliveries: 40 rows copied" in out and "marked as moved" in out
    lite_counts, pg_counts = await _row_counts(old.database_path, postgres_url)
    # The one row more in SQLite is its mark, written after the copy: "moved".
    assert lite_counts.pop("control") == pg_counts.pop("control") + 1
    assert lite_counts == pg_counts
    assert all(lite_counts[t] for t in ("subscribers", "subscriber_changes", "notices",
                                        "notice_revisions", "deliveries", "mail_events",
                                        "suppressions", "tickets", "quarantine",
                                        "source_state"))

    _, new = _config(tmp_path, "cluster", **on_backend(postgres_url))
    store = await open_store(new, lambda: T0)
    try:
        after = await _everything(store)
        # PostgreSQL's text holds no NUL: kept in place, visibly, as its store keeps one.
        [lite_item], [pg_item] = before.pop("quarantine")[0], after.pop("quarantine")[0]
        assert pg_item.pop("payload") == "<item>\\x00</item>" == \
            lite_item.pop("payload").replace("\0", "\\x00")
        assert pg_item == lite_item
        assert after == before
        # New rows continue after the copied ids.
        made = await store.create_subscriber(Subscriber(email="new@isp.example.jp"), T0)
        assert made.id is not None and made.id > max(s.id or 0 for s in before["subscribers"])
    finally:
        await store.close()

    # The old host's database refuses to run: it would mail again what the new one sends.
    code, _, err = await jpixd_command("run", "--config", str(old_path), cwd=tmp_path)
    assert code == 2 and "moved to" in err and "migrate-to" in err

    # The new one sends what was due (17 pending and the retry), once; not what was sent.
    # The confirmation came too (the one outbox), but this host has no [web] to make its
    # link: it fails, as it would have on the old host.
    due = {d.email for d in before["deliveries"][0]
           if d.state in (DeliveryState.PENDING, DeliveryState.RETRY) and d.notice_id}
    assert len(due) == 18
    daemon = Daemon(new, registry=CollectorRegistry(), clock=lambda: T0 + timedelta(hours=1))
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 30)
    rt = daemon.runtime
    assert rt is not None
    try:
        sender = rt.loops["sender"]
        for _ in range(50):
            counts = await rt.store.delivery_counts()
            if counts[DeliveryState.PENDING] == counts[DeliveryState.RETRY] == 0:
                break
            rt.wake("sender")
            await asyncio.wait_for(sender.next_round(), 15)
        counts = await rt.store.delivery_counts()
        assert counts[DeliveryState.SENT] == 38 and counts[DeliveryState.FAILED] == 2
        [confirm], _ = await rt.store.list_self_mails()
        assert confirm["state"] == "failed" and "no [web]" in confirm["reason"]
    finally:
        rt.supervisor.stop()
        await asyncio.wait_for(task, 30)
    mailed = [message_from_bytes(p.read_bytes(), policy=policy.default)
              for p in (tmp_path / "out-cluster").rglob("*.eml")]
    recipients = sorted(parseaddr(str(m["To"]))[1] for m in mailed)
    assert recipients == sorted(due)


async def test_what_is_refused_changes_nothing(tmp_path: Path,
                                               postgres_url: str) -> None:  # noqa: F811
    from jpixd.app import open_store

    path, cfg = _config(tmp_path, "single")
    store = await open_store(cfg, lambda: T0)
    try:
        await store.create_subscriber(Subscriber(email="a@isp.example.jp"), T0)
    finally:
        await store.close()

    async def pg_subscribers() -> int:
        conn = await asyncpg.connect(postgres_url)
        try:
            exists = await conn.fetchval("SELECT to_regclass('subscribers') IS NOT NULL")
            return int(await conn.fetchval("SELECT COUNT(*) FROM subscribers")) if exists else 0
        finally:
            await conn.close()

    # A password on the command line, where every user of the host reads it.
    with_password = postgres_url.replace("jpixd@", "jpixd:secret@")
    code, _, err = await jpixd_command("migrate-to", with_password, "--yes", "--config", str(path),
                                cwd=tmp_path)
    assert code == 2 and "password in it" in err
    code, _, err = await jpixd_command("migrate-to", "mysql://db/x", "--yes", "--config", str(path),
                                cwd=tmp_path)
    assert code == 2 and "postgresql://user@host" in err
    code, _, err = await jpixd_command("migrate-to", postgres_url, "--yes", "--password",
                                       "env:NOPE", "--config", str(path), cwd=tmp_path)
    assert code == 2 and "NOPE is not set" in err
    # The daemon still running on the state.
    with hold(cfg.state_dir):
        code, _, err = await jpixd_command("migrate-to", postgres_url, "--yes", "--config",
                                           str(path), cwd=tmp_path)
    assert code == 2 and "in use by another jpixd" in err
    assert await pg_subscribers() == 0

    # A target that already holds data: nothing mixed in.
    conn = await asyncpg.connect(postgres_url)
    try:
        from jpixd.store.pg import migrate as pg_migrate
        await pg_migrate.apply(conn, T0)
        await conn.execute("INSERT INTO subscribers (email, created_at, updated_at) "
                           "VALUES ('other@isp.example.jp', now(), now())")
    finally:
        await conn.close()
    code, _, err = await jpixd_command("migrate-to", postgres_url, "--yes", "--config", str(path),
                                "--password", "env:PGPW", env={"PGPW": "unused-by-trust"},
                                cwd=tmp_path)
    assert code == 2 and "already holds data (in subscribers)" in err
    assert await pg_subscribers() == 1
    # And the SQLite database was not marked: it still runs (`run` would not refuse it).
    store = await open_store(cfg, lambda: T0)
    try:
        assert "moved_to" not in await store.mode()
    finally:
        await store.close()


async def test_the_two_schemas_describe_the_same_tables_and_columns(
        tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    """Issue 24, part 3: what one store keeps, the other keeps too (the copy between them
    depends on it, and so does every query written once for both). Only the cluster's
    `hosts` is PostgreSQL's alone."""
    import sqlite3

    from jpixd.app import open_store
    from jpixd.store.transfer import TARGET_ONLY

    _, cfg = _config(tmp_path, "schema")
    store = await open_store(cfg, lambda: T0)  # opened: migrated
    await store.close()
    pg = await open_store(_config(tmp_path, "pg", **on_backend(postgres_url))[1], lambda: T0)
    await pg.close()
    lite = sqlite3.connect(cfg.database_path)
    try:
        tables = {t: {r[1] for r in lite.execute(f'PRAGMA table_info("{t}")')}
                  for (t,) in lite.execute("SELECT name FROM sqlite_master WHERE type = "
                                           "'table' AND name NOT LIKE 'sqlite_%'")}
    finally:
        lite.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        columns: dict[str, set[str]] = {}
        for r in await conn.fetch("SELECT table_name, column_name FROM "
                                  "information_schema.columns WHERE table_schema = 'public'"):
            columns.setdefault(r["table_name"], set()).add(r["column_name"])
    finally:
        await conn.close()
    assert set(columns) - set(tables) == TARGET_ONLY
    assert {t: columns[t] for t in tables} == tables
