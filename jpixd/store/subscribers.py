"""Subscribers: CRUD, all-or-nothing import, and the audience a fan-out reads.

Deleting is soft (`deleted_at`): the deliveries that went to a subscriber stay
explainable. One live subscriber per address; a changed address is a new recipient as far
as suppressions go, because suppressions are keyed by address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from jpixd.model import Subscriber, SubscriberStatus
from jpixd.records import ImportDiff, listed
from jpixd.store.base import (
    NOTICE_MAIL,
    SUPPRESSED_ADDRESSES,
    Conflict,
    Duplicate,
    Queries,
    Row,
    Tx,
    from_db,
    from_db_req,
    jlist,
    tlist,
)
from jpixd.store.control import PUT
from jpixd.subscribers import unsent_mail_after
from jpixd.sync import in_file, refusal, removals

_COLUMNS = ("email", "name", "organization", "carriers", "prefectures", "kinds", "services",
            "windows", "failure_respects_windows", "charset", "status", "paused", "legacy_id")
_LISTS = frozenset({"carriers", "prefectures", "kinds", "services", "windows"})


def _row_to_subscriber(row: Row) -> Subscriber:
    return Subscriber(
        id=row["id"], email=row["email"], name=row["name"], organization=row["organization"],
        carriers=tlist(row["carriers"]), prefectures=tlist(row["prefectures"]),
        kinds=tlist(row["kinds"]), services=tlist(row["services"]),
        windows=tlist(row["windows"]),
        failure_respects_windows=bool(row["failure_respects_windows"]),
        charset=row["charset"], status=SubscriberStatus(row["status"]),
        paused=bool(row["paused"]), legacy_id=row["legacy_id"] or "",
        created_at=from_db(row["created_at"]),
        updated_at=from_db(row["updated_at"]),
    )


def values_of(sub: Subscriber) -> list[Any]:
    out: list[Any] = []
    for col in _COLUMNS:
        v = getattr(sub, col)
        if col in _LISTS:
            out.append(jlist(v))
        elif col in ("failure_respects_windows", "paused"):
            out.append(bool(v))  # SQLite keeps 1/0, PostgreSQL a boolean
        elif col == "status":
            out.append(str(v))
        else:
            out.append(v)
    return out


_INSERT = (f"INSERT INTO subscribers ({', '.join(_COLUMNS)}, created_at, updated_at) "
           f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?, ?)")
# The same statement, telling the new row's id (PostgreSQL has no lastrowid).
INSERT_RETURNING = _INSERT + " RETURNING id"
# A subscriber's fields as they are written (both databases: lists as JSON text).
UPDATE_SETS = ", ".join(f"{c} = ?" for c in _COLUMNS)


class SyncRefused(Exception):
    """The sync would remove more subscribers than allowed; nothing was changed."""


@dataclass(frozen=True)
class SyncResult:
    imported: ImportResult
    removed: tuple[str, ...]  # unsubscribed: absent from the old system's list
    kept_here: tuple[str, ...]  # absent, but signed up here since the last sync or import


_LAST_LIST = "subscriber_list_applied"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    kept: int = 0  # unsubscribed or suppressed, left so (no --reactivate)
    diffs: tuple[ImportDiff, ...] = ()  # for a dry run to show


# An opt-out is the subscriber's word (特定電子メール法): only an explicit --reactivate
# turns these back to active.
_OPTED_OUT = frozenset({SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.SUPPRESSED})


def _diff(old: Subscriber, new: Subscriber) -> list[ImportDiff]:
    return [ImportDiff(old.email, c, getattr(old, c), getattr(new, c))
            for c in _COLUMNS if getattr(old, c) != getattr(new, c)]


# Notice mail only: a self-service mail was asked for by the subscriber as they are now
# (a manage link to resume a paused subscription), to the address it names.
SKIP_PENDING = (
    "UPDATE deliveries SET state = 'skipped', reason = ?, updated_at = ? "
    f"WHERE subscriber_id = ? AND state IN ('pending', 'retry') AND {NOTICE_MAIL}"
)


LOG_CHANGE = ("INSERT INTO subscriber_changes (subscriber_id, at, actor, action, detail) "
               "VALUES (?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class SubscriberChange:
    """One change to a subscriber, for operators: who, what, when."""

    id: int
    subscriber_id: int
    at: datetime
    actor: str  # admin | import | self-service | one-click | console | bounces
    action: str  # created | updated | confirmed | paused | resumed | unsubscribed | deleted
    detail: str


async def log_change(tx: Tx, subscriber_id: int, actor: str, action: str, detail: str,
                     now: datetime) -> None:
    """Who changed a subscriber, how and when, in the change's own transaction."""
    await tx.execute(LOG_CHANGE, (subscriber_id, now, actor, action, detail[:2000]))


def _what(old: Subscriber, new: Subscriber) -> tuple[str, str]:
    """(action, detail) of an update: the fields changed, old → new."""
    changed = [c for c in _COLUMNS if getattr(old, c) != getattr(new, c)]
    if changed == ["paused"]:
        return ("paused" if new.paused else "resumed"), ""
    if "status" in changed and new.status == SubscriberStatus.UNSUBSCRIBED:
        action = "unsubscribed"
    elif "status" in changed and old.status == SubscriberStatus.PENDING \
            and new.status == SubscriberStatus.ACTIVE:
        action = "confirmed"
    else:
        action = "updated"
    detail = "; ".join(f"{c}: {_shown(getattr(old, c))} → {_shown(getattr(new, c))}"
                       for c in changed)
    return action, detail


def _shown(value: Any) -> str:
    return listed(value) if isinstance(value, tuple) else str(value)


def _same(a: Subscriber, b: Subscriber) -> bool:
    return all(getattr(a, c) == getattr(b, c) for c in _COLUMNS)


@dataclass(frozen=True)
class ImportPlan:
    """What an import does, decided before any write (the same for both stores)."""

    new: list[Subscriber]
    updates: list[tuple[Subscriber, Subscriber]]  # (as it is, as it becomes)
    unchanged: int
    kept: int
    diffs: list[ImportDiff]

    def result(self) -> ImportResult:
        return ImportResult(len(self.new), len(self.updates), self.unchanged, self.kept,
                            tuple(self.diffs))


def plan_import(existing: dict[str, Subscriber],
                rows: Sequence[tuple[Subscriber, frozenset[str]]],
                reactivate: bool) -> ImportPlan:
    """Each row is (subscriber, the columns its file has): a new address is created; an
    update changes only those columns, `status` only when the file has it, and an
    unsubscribed or suppressed subscriber is never made active again without
    `reactivate`."""
    new = [s for s, _ in rows if s.email not in existing]
    diffs = [ImportDiff(s.email, "new") for s in new]
    updates: list[tuple[Subscriber, Subscriber]] = []
    unchanged = kept = 0
    for sub, columns in rows:
        old = existing.get(sub.email)
        if old is None:
            continue
        target = replace(old, **{c: getattr(sub, c) for c in columns if c in _COLUMNS})
        if old.status in _OPTED_OUT and target.status != old.status and not reactivate:
            target = replace(target, status=old.status)
            kept += 1
        if _same(old, target):
            unchanged += 1
            continue
        diffs += _diff(old, target)
        updates.append((old, target))
    return ImportPlan(new, updates, unchanged, kept, diffs)


class SubscriberQueries(Queries):
    """Subscribers: reads and changes, the same SQL on both databases (the audience a
    fan-out reads is each store's own)."""

    async def create_subscriber(self, sub: Subscriber, now: datetime, *,
                                actor: str = "admin") -> Subscriber:
        async with self.transaction() as tx:
            new_id = await self._insert_subscriber(tx, sub, now)
            await log_change(tx, new_id, actor, "created", f"status: {sub.status}", now)
        created = await self.get_subscriber(new_id)
        assert created is not None
        return created

    async def _insert_subscriber(self, tx: Tx, sub: Subscriber, now: datetime) -> int:
        try:
            row = await tx.one(INSERT_RETURNING, [*values_of(sub), now, now])
        except Duplicate as exc:
            raise Conflict(f"a subscriber with address {sub.email} already exists") from exc
        await self._bump_subscribers(tx, now)
        assert row is not None
        return int(row["id"])

    async def update_subscriber(self, subscriber_id: int, changes: dict[str, Any],
                                now: datetime, *, actor: str = "admin") -> Subscriber | None:
        """Apply validated changes; None if there is no such live subscriber."""
        async with self.transaction() as tx:
            row = await tx.one("SELECT * FROM subscribers WHERE id = ? AND deleted_at IS NULL"
                               + self.for_update, (subscriber_id,))
            if row is None:
                return None
            old = _row_to_subscriber(row)
            new = replace(old, **changes)
            if not _same(old, new):
                await self._write_update(tx, old, new, now, actor)
        return await self.get_subscriber(subscriber_id)

    async def _write_update(self, tx: Tx, old: Subscriber, new: Subscriber, now: datetime,
                            actor: str) -> None:
        assert old.id is not None
        await log_change(tx, old.id, actor, *_what(old, new), now)
        if new.status != old.status and new.status in (SubscriberStatus.ACTIVE,
                                                       SubscriberStatus.UNSUBSCRIBED):
            # Confirmed, or left: a confirmation link mailed before means nothing now
            # (an old mail in a shared mailbox must not undo an unsubscribe).
            await tx.execute("UPDATE subscribers SET signed_up_at = NULL WHERE id = ?",
                             (old.id,))
        try:
            await tx.execute(f"UPDATE subscribers SET {UPDATE_SETS}, updated_at = ? "
                             "WHERE id = ?", [*values_of(new), now, old.id])
        except Duplicate as exc:
            raise Conflict(f"a subscriber with address {new.email} already exists") from exc
        await self._bump_subscribers(tx, now)
        effect = unsent_mail_after(old, new)
        if effect is not None and effect[0] == "skip":
            await tx.execute(SKIP_PENDING, (effect[1], now, old.id))
        elif effect is not None:  # readdress: mail not yet sent goes to the new address
            await tx.execute(
                "UPDATE deliveries SET email = ?, updated_at = ? WHERE subscriber_id = ? "
                f"AND state IN ('pending', 'retry') AND {NOTICE_MAIL}",
                (new.email, now, old.id))

    async def delete_subscriber(self, subscriber_id: int, now: datetime, *,
                                actor: str = "admin") -> bool:
        async with self.transaction() as tx:
            if await tx.execute("UPDATE subscribers SET deleted_at = ?, updated_at = ? "
                                "WHERE id = ? AND deleted_at IS NULL",
                                (now, now, subscriber_id)) == 0:
                return False
            await log_change(tx, subscriber_id, actor, "deleted", "", now)
            await self._bump_subscribers(tx, now)
            await tx.execute(SKIP_PENDING, ("subscriber deleted", now, subscriber_id))
        return True

    async def import_subscribers(self, rows: Sequence[tuple[Subscriber, frozenset[str]]],
                                 now: datetime, *, dry_run: bool = False,
                                 reactivate: bool = False) -> ImportResult:
        """Create or update by address, all in one transaction (rolled back on dry runs),
        as `plan_import` decides; one import at a time (two hosts seeding the same file:
        the second finds the first's rows)."""
        async with self.transaction(commit=not dry_run, lock="subscribers") as tx:
            existing = {r["email"]: _row_to_subscriber(r) for r in await tx.all(
                "SELECT * FROM subscribers WHERE deleted_at IS NULL")}
            plan = plan_import(existing, rows, reactivate)
            await tx.many(_INSERT, [[*values_of(s), now, now] for s in plan.new])
            await self._bump_subscribers(tx, now)
            for old, target in plan.updates:
                await self._write_update(tx, old, target, now, "import")
            await self._mark_list(tx, now)
        return plan.result()

    async def sync_subscribers(self, rows: Sequence[tuple[Subscriber, frozenset[str]]],
                               now: datetime, *, dry_run: bool = False,
                               allowed_removals: int | None = None) -> SyncResult:
        """The old system's whole list (`jpixd.sync`): added, updated, and the absent
        unsubscribed with actor `sync`, in one transaction (rolled back on a dry run, or
        with SyncRefused when it would remove more than allowed)."""
        async with self.transaction(commit=not dry_run, lock="subscribers") as tx:
            existing = {r["email"]: _row_to_subscriber(r) for r in await tx.all(
                "SELECT * FROM subscribers WHERE deleted_at IS NULL")}
            last = await tx.one("SELECT updated_at FROM control WHERE key = ?",
                                (_LAST_LIST,))
            here = {r["email"] for r in await tx.all(
                "SELECT s.email FROM subscriber_changes c JOIN subscribers s "
                "ON s.id = c.subscriber_id WHERE c.action = 'created' AND c.actor IN "
                "('self-service', 'admin', 'console') AND c.at >= ?",
                (from_db(last["updated_at"]) if last else _EPOCH,))}
            plan = plan_import(existing, rows, reactivate=False)
            gone = removals(existing, in_file(rows), here)
            live = sum(1 for s in existing.values()
                       if s.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING))
            why = refusal(len(gone.removed), live, allowed_removals)
            if why is not None:
                raise SyncRefused(why)
            suppressed = {r["email"] for r in await tx.all(SUPPRESSED_ADDRESSES)}
            # An address SES suppressed for jpixd comes in suppressed, never active.
            new = [replace(n, status=SubscriberStatus.SUPPRESSED) if n.email in suppressed
                   else n for n in plan.new]
            await tx.many(_INSERT, [[*values_of(n), now, now] for n in new])
            for n in new:
                row = await tx.one("SELECT id FROM subscribers WHERE email = ? AND "
                                   "deleted_at IS NULL", (n.email,))
                assert row is not None
                await log_change(tx, int(row["id"]), "sync", "created",
                                 f"status: {n.status}", now)
            await self._bump_subscribers(tx, now)
            for old, target in plan.updates:
                await self._write_update(tx, old, target, now, "sync")
            for sub in gone.removed:
                await self._write_update(
                    tx, sub, replace(sub, status=SubscriberStatus.UNSUBSCRIBED), now, "sync")
            await self._mark_list(tx, now)
        return SyncResult(plan.result(), tuple(s.email for s in gone.removed),
                          tuple(gone.kept_here))

    async def _mark_list(self, tx: Tx, now: datetime) -> None:
        """When the old system's list was last applied (an import or a sync): sign-ups
        here after it are not the old system's to remove."""
        await tx.execute(PUT, (_LAST_LIST, "{}", now))

    async def subscribers_changed_since(self, since: datetime) -> list[Subscriber]:
        """Every subscriber changed at or after `since`, deleted ones as unsubscribed
        (what a rollback to the old system must learn)."""
        rows = await self._all("SELECT * FROM subscribers WHERE updated_at >= ? ORDER BY id",
                               (since,))
        out = []
        for r in rows:
            sub = _row_to_subscriber(r)
            out.append(replace(sub, status=SubscriberStatus.UNSUBSCRIBED)
                       if r["deleted_at"] is not None else sub)
        return out

    async def signup(self, sub: Subscriber, now: datetime) -> tuple[Subscriber, bool]:
        """A sign-up: a new `pending` subscriber (True), or the live one the address
        already has (False). An active or suppressed one is left as it is: a stranger's
        form must not alter somebody's settings. One that has not confirmed (`pending`),
        or that left (`unsubscribed`), takes the form's settings: the latest sign-up
        decides what its owner is asked to confirm, and confirmation links sent before
        it confirm nothing (`signed_up_at`)."""
        try:
            async with self.transaction() as tx:
                row = await tx.one("SELECT * FROM subscribers WHERE email = ? AND "
                                   "deleted_at IS NULL" + self.for_update, (sub.email,))
                if row is None:
                    pending = replace(sub, status=SubscriberStatus.PENDING, paused=False)
                    sid = await self._insert_subscriber(tx, pending, now)
                    await log_change(tx, sid, "self-service", "created", "status: pending",
                                     now)
                else:
                    old = _row_to_subscriber(row)
                    assert old.id is not None
                    sid = old.id
                    if old.status not in (SubscriberStatus.PENDING,
                                          SubscriberStatus.UNSUBSCRIBED):
                        return old, False
                    target = replace(sub, id=sid, status=old.status, paused=False)
                    if not _same(old, target):
                        await self._write_update(tx, old, target, now, "self-service")
                await tx.execute("UPDATE subscribers SET signed_up_at = ? WHERE id = ?",
                                 (now, sid))
        except Conflict:
            # Another sign-up for the address (on another host) committed first: it is
            # there now, as if this one had found it.
            found = await self.subscriber_by_email(sub.email)
            if found is None:
                raise
            return found, False
        got = await self.get_subscriber(sid)
        assert got is not None
        return got, row is None

    async def signed_up_at(self, subscriber_id: int) -> datetime | None:
        """When the pending (or returning) subscriber last signed up; None once they
        confirmed or left since."""
        row = await self._one("SELECT signed_up_at FROM subscribers WHERE id = ?",
                              (subscriber_id,))
        return from_db(row["signed_up_at"]) if row else None

    async def get_subscriber(self, subscriber_id: int) -> Subscriber | None:
        row = await self._one("SELECT * FROM subscribers WHERE id = ? AND deleted_at IS NULL",
                              (subscriber_id,))
        return _row_to_subscriber(row) if row else None

    async def list_subscribers(self, *, email: str | None = None, status: str | None = None,
                               carrier: str | None = None, prefecture: str | None = None,
                               kind: str | None = None, query: str | None = None,
                               limit: int = 100, offset: int = 0) -> tuple[list[Subscriber], int]:
        where = ["deleted_at IS NULL"]
        params: list[Any] = []
        if email:
            where.append("email = ?")
            params.append(email)
        if status:
            where.append("status = ?")
            params.append(status)
        for col, value in (("carriers", carrier), ("kinds", kind)):
            if value:
                where.append(self.contains(col))
                params.append(value)
        if prefecture:
            where.append(self.prefecture_match)
            params.append(prefecture)
        if query:
            # The words themselves: % and _ in a search are letters, not wildcards.
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(email LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\' "
                         "OR organization LIKE ? ESCAPE '\\')")
            params.extend([f"%{escaped}%"] * 3)
        rows, total = await self._page("subscribers", where, params, "id", limit, offset)
        return [_row_to_subscriber(r) for r in rows], total

    async def subscriber_by_legacy_id(self, legacy_id: str) -> Subscriber | None:
        """The live subscriber the old system knew by this id (its mailed links)."""
        row = await self._one("SELECT * FROM subscribers WHERE legacy_id = ? AND "
                              "legacy_id <> '' AND deleted_at IS NULL", (legacy_id,))
        return _row_to_subscriber(row) if row else None

    async def subscriber_by_email(self, email: str) -> Subscriber | None:
        row = await self._one("SELECT * FROM subscribers WHERE email = ? AND "
                              "deleted_at IS NULL", (email,))
        return _row_to_subscriber(row) if row else None

    async def subscriber_changes(self, subscriber_id: int | None = None,
                                 limit: int = 100) -> list[SubscriberChange]:
        """The newest changes first, of one subscriber or of all."""
        where = "WHERE subscriber_id = ?" if subscriber_id is not None else ""
        params: list[Any] = [subscriber_id] if subscriber_id is not None else []
        rows = await self._all(f"SELECT * FROM subscriber_changes {where} "
                               "ORDER BY id DESC LIMIT ?", [*params, limit])
        return [SubscriberChange(r["id"], r["subscriber_id"], from_db_req(r["at"]),
                                 r["actor"], r["action"], r["detail"]) for r in rows]

    async def all_subscribers(self) -> list[Subscriber]:
        rows = await self._all("SELECT * FROM subscribers WHERE deleted_at IS NULL ORDER BY id")
        return [_row_to_subscriber(r) for r in rows]
