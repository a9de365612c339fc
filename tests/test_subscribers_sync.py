"""`jpixd subscribers sync` and `export --changed-since` (issue 23, first part): the old
system's whole list applied right before the cut-over, never undoing an opt-out made in
jpixd, never removing who signed up here, refusing a list that would remove too many;
and the changes since a time, for a rollback to the old system."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jpixd.model import Subscriber, SubscriberStatus
from jpixd.store import Store
from jpixd.store.subscribers import SyncRefused
from tests.conftest import base_mapping, toml_dumps

COLUMNS = frozenset({"email", "name"})


def row(email: str, name: str = "") -> tuple[Subscriber, frozenset[str]]:
    return Subscriber(email=email, name=name), COLUMNS


async def _state(store: Store) -> dict[str, str]:
    return {s.email: str(s.status) for s in await store.all_subscribers()}


async def test_sync_applies_the_old_list_and_keeps_what_jpixd_knows(
        store: Store, now: object) -> None:
    from datetime import datetime

    assert isinstance(now, datetime)
    await store.import_subscribers([row(f"{n}@isp.example.jp") for n in "abcdf"], now)
    c = await store.subscriber_by_email("c@isp.example.jp")
    assert c is not None and c.id is not None
    later = now + timedelta(hours=1)
    await store.update_subscriber(c.id, {"status": SubscriberStatus.UNSUBSCRIBED}, later,
                                  actor="one-click")
    await store.signup(Subscriber(email="e@isp.example.jp"), later)  # signed up here
    from tests.sesnotes import record_bounce
    await record_bounce(store, "y@isp.example.jp", later)  # SES suppressed y
    f = await store.subscriber_by_email("f@isp.example.jp")
    assert f is not None and f.id is not None
    file = [row("a@isp.example.jp", "新しい名前"), row("c@isp.example.jp"),
            row("x@isp.example.jp"), row("y@isp.example.jp")]
    when = now + timedelta(hours=2)

    before = await _state(store)
    with pytest.raises(SyncRefused, match="would unsubscribe 3 of 5"):
        await store.sync_subscribers(file, when)  # 3 of 5 is over 10 %
    with pytest.raises(SyncRefused, match="more than the 2 allowed"):
        await store.sync_subscribers(file, when, allowed_removals=2)
    dry = await store.sync_subscribers(file, when, dry_run=True, allowed_removals=3)
    assert await _state(store) == before  # a dry run and a refusal change nothing
    gone = ["b@isp.example.jp", "d@isp.example.jp", "f@isp.example.jp"]
    assert sorted(dry.removed) == gone

    result = await store.sync_subscribers(file, when, allowed_removals=3)
    assert (result.imported.created, result.imported.updated) == (2, 1)
    assert result.imported.kept == 0  # c's file row has no status column: nothing to keep
    assert sorted(result.removed) == gone
    assert result.kept_here == ("e@isp.example.jp",)
    state = await _state(store)
    assert state == {"a@isp.example.jp": "active", "b@isp.example.jp": "unsubscribed",
                     "c@isp.example.jp": "unsubscribed", "d@isp.example.jp": "unsubscribed",
                     "e@isp.example.jp": "pending", "f@isp.example.jp": "unsubscribed",
                     "x@isp.example.jp": "active", "y@isp.example.jp": "suppressed"}
    changes = await store.subscriber_changes(f.id)
    assert (changes[0].actor, changes[0].action) == ("sync", "unsubscribed")
    a = await store.subscriber_by_email("a@isp.example.jp")
    assert a is not None and a.name == "新しい名前"


async def test_a_file_saying_active_never_undoes_an_opt_out(store: Store, now: object) -> None:
    from datetime import datetime

    assert isinstance(now, datetime)
    await store.import_subscribers([row("left@isp.example.jp")], now)
    left = await store.subscriber_by_email("left@isp.example.jp")
    assert left is not None and left.id is not None
    await store.update_subscriber(left.id, {"status": SubscriberStatus.UNSUBSCRIBED},
                                  now + timedelta(minutes=1), actor="one-click")
    with_status = (Subscriber(email="left@isp.example.jp", status=SubscriberStatus.ACTIVE),
                   frozenset({"email", "status"}))
    result = await store.sync_subscribers([with_status], now + timedelta(minutes=2))
    assert result.imported.kept == 1
    assert (await _state(store))["left@isp.example.jp"] == "unsubscribed"


def _jpixd(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPIXD_")}
    return subprocess.run([sys.executable, "-m", "jpixd", *args, "--config",
                           str(tmp / "jpixd.toml")], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_commands_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "jpixd.toml").write_text(toml_dumps(base_mapping(tmp_path)))
    first = "email,name\n" + "".join(f"u{i}@isp.example.jp,利用者{i}\n" for i in range(20))
    (tmp_path / "old.csv").write_text(first, encoding="utf-8")
    assert _jpixd(tmp_path, "subscribers", "import", str(tmp_path / "old.csv")).returncode == 0
    # The old system's list a week later: u0 renamed, u19 gone, u20 new (Shift_JIS).
    later = first.replace("利用者0", "運用担当").replace("u19@isp.example.jp,利用者19\n", "") \
        + "u20@isp.example.jp,新規\n"
    (tmp_path / "new.csv").write_bytes(later.encode("shift_jis"))
    dry = _jpixd(tmp_path, "subscribers", "sync", str(tmp_path / "new.csv"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "u19@isp.example.jp: unsubscribed (not in the file)" in dry.stdout
    assert "1 added, 1 changed, 1 unsubscribed" in dry.stdout and "dry run" in dry.stdout
    done = _jpixd(tmp_path, "subscribers", "sync", str(tmp_path / "new.csv"))
    assert done.returncode == 0, done.stderr
    # A truncated export: refused, nothing changed.
    (tmp_path / "cut.csv").write_text("email\nu1@isp.example.jp\n")
    refused = _jpixd(tmp_path, "subscribers", "sync", str(tmp_path / "cut.csv"))
    assert refused.returncode == 2 and "--allow-removals 19" in refused.stderr
    bad = _jpixd(tmp_path, "subscribers", "sync", str(tmp_path / "missing.csv"))
    assert bad.returncode == 2
    # What changed since before the sync, for the old system: in import's CSV.
    since = _jpixd(tmp_path, "subscribers", "export", "--changed-since", "2000-01-01T00:00Z")
    assert since.returncode == 0
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(since.stdout))}
    assert rows["u19@isp.example.jp"]["status"] == "unsubscribed"
    assert rows["u0@isp.example.jp"]["name"] == "運用担当"
    assert "u20@isp.example.jp" in rows
    future = _jpixd(tmp_path, "subscribers", "export", "--changed-since", "2999-01-01T00:00Z")
    assert future.returncode == 0 and future.stdout.count("\n") == 1  # the header only
    wrong = _jpixd(tmp_path, "subscribers", "export", "--changed-since", "yesterday")
    assert wrong.returncode == 2 and "ISO 8601" in wrong.stderr
