"""`jpixd shadow report` and `jpixd cutover`: what a shadow run would have sent, and the
switch to sending for real (issue 15; the runbook is in the README)."""

from __future__ import annotations

import sys
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from jpixd.cliargs import aware_time
from jpixd.config import Config
from jpixd.model import DeliveryState, utcnow


def _text(message: bytes) -> str:
    msg = message_from_bytes(message, policy=policy.default)
    if not isinstance(msg, EmailMessage):
        return ""
    part = msg.get_body(("plain",))
    content = part.get_content() if part is not None else ""
    return content if isinstance(content, str) else ""


async def report(cfg: Config, *, notice: int | None, since: str | None, full: bool) -> int:
    from jpixd.app import open_store

    ok, when = aware_time("--since", since)
    if not ok:
        return 2
    store = await open_store(cfg, utcnow)
    try:
        mode = await store.mode()
        mails = await store.shadow_mail(since=when, notice_id=notice)
    finally:
        await store.close()
    state = ("in shadow mode since " + str(mode.get("since")) if mode.get("shadow") else
             f"cut over at {mode.get('cutover_at')}" if mode.get("cutover_at") else
             "never run in shadow mode")
    print(f"jpixd shadow report: {len(mails)} mail(s) kept; the database is {state}")
    current = None
    tz = cfg.tz
    for m in mails:
        if m.notice_id != current:
            current = m.notice_id
            print(f"\nnotice #{m.notice_id} {m.notice_title}")
        at = m.rendered_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        print(f"  {at}  {m.change:<9} {m.email:<40} {m.subject}")
        if full:
            for line in _text(m.message).splitlines():
                print(f"      | {line}")
    return 0


async def cutover(cfg: Config, *, confirmed: bool, since: str | None = None) -> int:
    from jpixd import statelock

    ok, when = aware_time("--since", since)
    if not ok:
        return 2
    try:
        with statelock.hold(cfg.state_dir, utcnow()):  # never under a running daemon
            return await _cutover(cfg, confirmed=confirmed, since=when)
    except statelock.StateBusy as err:
        print(f"jpixd: {err}: stop the daemon before the cut-over", file=sys.stderr)
        return 2


async def _cutover(cfg: Config, *, confirmed: bool, since: datetime | None) -> int:
    from jpixd.app import open_store

    store = await open_store(cfg, utcnow)
    try:
        if not (await store.mode()).get("shadow"):
            print("jpixd: this database is not in shadow mode: nothing to cut over",
                  file=sys.stderr)
            return 2
        counts = await store.delivery_counts()
        gap = await store.gap_notices(since) if since is not None else []
        for notice_id, title, recipients in gap:
            print(f"  first seen after the old system stopped, to be mailed: notice "
                  f"#{notice_id} {title} ({recipients} recipient(s))")
        if not confirmed:
            print("jpixd cutover would close every notice mail not yet sent "
                  f"({counts[DeliveryState.PENDING] + counts[DeliveryState.RETRY]} pending or "
                  "retrying; reminders are kept) and leave shadow mode, so that the next "
                  "`jpixd run` sends for real. Run it again with --yes to do it.")
            return 0
        result = await store.cutover(utcnow(), since)
        if cfg.archive is not None:
            await store.archive_marker("cutover", utcnow())
    finally:
        await store.close()
    if since is not None:
        print(f"cut over: {result.gap} notice mail(s) first seen after {since.isoformat()} "
              "will be sent by the next run")
    print(f"cut over: {result.skipped} notice mail(s) taken as announced by the old system, "
          f"{result.reminders_kept} reminder(s) kept, {result.shadow} shadow mail(s) on "
          "record. The next `jpixd run` sends for real.")
    return 0
