"""Shadow mode and the cut-over (issue 15): mail rendered and kept instead of sent, what
it would have been, and the switch to sending for real.

The mode is kept in the database, not only on the command line: a database that was run
in shadow holds deliveries for notices the old system has already announced, and a plain
`jpixd run` on it would mail them all again. So a plain run refuses it until
`jpixd cutover` has said which of them count as announced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from jpixd.store.base import Queries, Row, from_db_req, to_db
from jpixd.store.control import PUT

_MODE_KEY = "mode"


@dataclass(frozen=True)
class ShadowMail:
    delivery_id: int
    notice_id: int
    notice_title: str
    change: str
    purpose: str
    email: str
    subject: str
    charset: str
    rendered_at: datetime
    message: bytes


@dataclass(frozen=True)
class CutoverResult:
    skipped: int  # notice mail not yet due, now taken as announced by the old system
    reminders_kept: int  # reminders still to come, sent for real
    shadow: int  # mail that was rendered in shadow (kept, as the record of the run)
    gap: int = 0  # notice mail of what was first seen after --since: sent by the next run


# Notice mail of a revision first seen at or after `since` (the moment the old system
# stopped sending): nobody announced it, so it goes out with the first live run.
_IN_GAP = ("purpose = 'notice' AND state IN ('pending', 'retry', 'sending', 'shadow') "
           "AND revision_id IN (SELECT id FROM notice_revisions WHERE seen_at >= ?)")


# Kept mail with its notice, for `shadow report` (both stores; `{where}` is filled in).
SHADOW_MAIL = """
    SELECT m.*, d.notice_id, d.email, d.purpose, r.change, n.title
    FROM shadow_mail m JOIN deliveries d ON d.id = m.delivery_id
    JOIN notice_revisions r ON r.id = d.revision_id
    JOIN notices n ON n.id = d.notice_id
    WHERE {where} ORDER BY d.notice_id, m.rendered_at, d.email"""


def shadow_mail_from(r: Row) -> ShadowMail:
    return ShadowMail(r["delivery_id"], r["notice_id"], r["title"],
                      "reminder" if r["purpose"] == "reminder" else r["change"],
                      r["purpose"], r["email"], r["subject"], r["charset"],
                      from_db_req(r["rendered_at"]), bytes(r["message"]))


class ShadowStore(Queries):
    """The mode, the kept mail and the cut-over, the same SQL on both databases."""

    async def mode(self) -> dict[str, object]:
        """{"shadow": bool, "since": …, "cutover_at": …}; {} for a database never run in
        shadow."""
        row = await self._one("SELECT value FROM control WHERE key = ?", (_MODE_KEY,))
        return dict(json.loads(row["value"])) if row else {}

    async def enter_shadow(self, now: datetime) -> None:
        mode = await self.mode()
        if mode.get("shadow"):
            return
        value = json.dumps({"shadow": True, "since": to_db(now)})
        await self._write(PUT, (_MODE_KEY, value, now))

    async def mark_moved(self, to: str, now: datetime) -> None:
        """This database was copied to `to` (`jpixd migrate-to`), which runs from now on:
        a run on this one would send again what that one sends (Daemon refuses it)."""
        mode = await self.mode()
        mode.update(moved_to=to, moved_at=to_db(now))
        await self._write(PUT, (_MODE_KEY, json.dumps(mode), now))

    async def shadow_mail(self, *, since: datetime | None = None,
                          notice_id: int | None = None) -> list[ShadowMail]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if since is not None:
            where.append("m.rendered_at >= ?")
            params.append(since)
        if notice_id is not None:
            where.append("d.notice_id = ?")
            params.append(notice_id)
        rows = await self._all(SHADOW_MAIL.format(where=" AND ".join(where)), params)
        return [shadow_mail_from(r) for r in rows]

    async def mark_shadow(self, delivery_id: int, now: datetime, *, subject: str,
                          message: bytes, charset: str) -> None:
        """A claimed delivery rendered and kept, not sent: final, like `sent`."""
        async with self.transaction() as tx:
            await tx.execute("UPDATE deliveries SET state = 'shadow', sent_at = NULL, "
                             "transport = 'shadow', reason = 'shadow mode: rendered, not sent', "
                             "updated_at = ? WHERE id = ? AND state = 'sending'",
                             (now, delivery_id))
            await tx.execute("INSERT INTO shadow_mail (delivery_id, subject, message, charset, "
                             "rendered_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id) "
                             "DO UPDATE SET subject = excluded.subject, message = "
                             "excluded.message, charset = excluded.charset, "
                             "rendered_at = excluded.rendered_at",
                             (delivery_id, subject, message, charset, now))

    async def gap_notices(self, since: datetime) -> list[tuple[int, str, int]]:
        """(notice id, title, recipients) of what a cut-over `--since` will mail."""
        rows = await self._all(
            "SELECT d.notice_id, n.title, COUNT(*) AS n FROM deliveries d JOIN notices n "
            f"ON n.id = d.notice_id WHERE {_IN_GAP.replace('revision_id', 'd.revision_id')} "
            "GROUP BY d.notice_id, n.title ORDER BY d.notice_id", (since,))
        return [(int(r["notice_id"]), str(r["title"]), int(r["n"])) for r in rows]

    async def cutover(self, now: datetime, since: datetime | None = None) -> CutoverResult:
        """Everything seen so far counts as announced by the old system: notice mail not
        yet sent is closed (`skipped`, "cut-over"), reminders still ahead are kept, and
        the database leaves shadow mode: the next `jpixd run` sends for real. With
        `since`, what was first seen from then on (the old system had stopped) is not
        taken as announced: its mail, kept in shadow or not yet rendered, goes out."""
        async with self.transaction() as tx:
            gap = 0
            if since is not None:
                gap = await tx.execute(
                    "UPDATE deliveries SET state = 'pending', not_before = ?, "
                    "first_due_at = ?, attempts = 0, claimed_by = NULL, lease_until = NULL, "
                    "reason = 'cut-over: first seen after the old system stopped', "
                    f"updated_at = ? WHERE {_IN_GAP}", (now, now, now, since))
            # (The gap's rows are `pending` again by now; they are not announced.)
            not_gap, params = ("", [now]) if since is None else (
                " AND revision_id NOT IN (SELECT id FROM notice_revisions "
                "WHERE seen_at >= ?)", [now, since])
            skipped = await tx.execute(
                "UPDATE deliveries SET state = 'skipped', reason = 'cut-over: announced by "
                "the old system', updated_at = ? WHERE purpose = 'notice' "
                f"AND state IN ('pending', 'retry', 'sending'){not_gap}", params)
            kept = await tx.one("SELECT COUNT(*) AS n FROM deliveries WHERE purpose = "
                                "'reminder' AND state IN ('pending', 'retry')")
            # A reminder taken in flight by a shadow round goes back to wait its turn.
            await tx.execute("UPDATE deliveries SET state = 'retry', updated_at = ? "
                             "WHERE purpose = 'reminder' AND state = 'sending'", (now,))
            shadow = await tx.one("SELECT COUNT(*) AS n FROM deliveries WHERE state = 'shadow'")
            row = await tx.one("SELECT value FROM control WHERE key = ?" + self.for_update,
                               (_MODE_KEY,))
            mode = json.loads(row["value"]) if row else {}
            value = json.dumps({"shadow": False, "since": mode.get("since"),
                                "cutover_at": to_db(now)})
            await tx.execute(PUT, (_MODE_KEY, value, now))
        assert kept is not None and shadow is not None
        return CutoverResult(skipped, int(kept["n"]), int(shadow["n"]), gap)

