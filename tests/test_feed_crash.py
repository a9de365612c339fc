"""kill -9 of a real `jpixd run` while it polls: after a restart nothing is lost and
nothing is recorded (or mailed) twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProcess, base_mapping, toml_dumps
from tests.feedfixtures import RssItem, rss2
from tests.feedserver import Page, feed_server

ITEMS = 40
SUBSCRIBERS = 3


def feed() -> bytes:
    return rss2([RssItem(f"【故障】大阪府の一部でひかり電話がご利用しづらい状況について（{n}）",
                         f"https://www.example.jp/f/{n}.html",
                         f"発生日時 2026年11月28日 9時{n:02d}分頃")
                 for n in range(ITEMS)])


def _count(tmp_path: Path) -> int:
    db = tmp_path / "state" / "jpixd.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM notices").fetchone()[0])
        except sqlite3.OperationalError:
            return 0  # killed before the first migration committed


async def test_kill_9_while_polling_loses_nothing_and_records_nothing_twice(
        tmp_path: Path, daemon_process: Callable[..., DaemonProcess]) -> None:
    subs = tmp_path / "subs.csv"
    subs.write_text("email,carriers\n" + "".join(f"u{i}@isp.example.jp,west\n"
                                                  for i in range(SUBSCRIBERS)))
    body = feed()
    victim: list[DaemonProcess] = []
    partial: list[int] = []
    kill_after: list[float] = [0.0, 0.01, 0.03]  # one kill per cycle, at varying moments

    def kill_soon(path: str) -> None:
        if victim and kill_after and victim[-1].proc.poll() is None:
            # The body is out: the daemon is now between fetch and commit, or in it.
            asyncio.get_running_loop().call_later(kill_after.pop(0), victim[-1].proc.kill)

    async with feed_server() as server:
        server.pages["/rss"] = Page(body)
        server.after_body = kill_soon
        app_url = server.url("/rss")
        cfg: dict[str, Any] = base_mapping(
            tmp_path, sample_subscribers=str(subs),
            sources=[{"name": "west", "kind": "rss", "carrier": "west", "url": app_url,
                      "interval": "1s", "timeout": "1s", "send_on_first_poll": True}])
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(cfg), encoding="utf-8")
        for _ in range(3):
            proc = daemon_process(["run", "--config", str(path)])
            victim.append(proc)
            code = await asyncio.to_thread(proc.finish, 30)
            assert code == -9, "".join(proc.lines)
            partial.append(_count(tmp_path))
        final = daemon_process(["run", "--config", str(path)])
        await asyncio.to_thread(final.wait_for_event, "feed polled", 30)
        final.proc.terminate()
        assert await asyncio.to_thread(final.finish, 30) == 0

    print("notices committed when each kill landed:", partial)  # noqa: T201 (for -s runs)
    db = sqlite3.connect(tmp_path / "state" / "jpixd.sqlite3")
    notices = db.execute("SELECT COUNT(*) FROM notices").fetchone()[0]
    revisions = db.execute("SELECT notice_id, COUNT(*) FROM notice_revisions "
                           "GROUP BY notice_id HAVING COUNT(*) > 1").fetchall()
    per_pair = db.execute("SELECT notice_id, subscriber_id, COUNT(*) FROM deliveries "
                          "GROUP BY notice_id, subscriber_id HAVING COUNT(*) > 1").fetchall()
    total = db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    assert notices == ITEMS
    assert revisions == []  # each notice recorded once
    assert per_pair == []  # nobody mailed twice about the same notice
    assert total == ITEMS * SUBSCRIBERS  # and nobody missed one
