"""Channels beyond mail (issue 26): a subscriber's webhook, Slack and Teams URLs, and
each message to one as an outbox row — claimed under a lease, retried, failed with its
reason, skipped when its channel is paused or removed. The same SQL on both databases;
the rows a fan-out adds are written by each store's `record_revision`, in the revision's
own transaction (`CHANNEL_MESSAGE_INSERT`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from jpixd.channels.manage import plan_import
from jpixd.channels.urls import shown
from jpixd.records import Channel, ChannelMessage, ImportDiff
from jpixd.store.base import (
    Plan,
    Queries,
    Row,
    Step,
    Tx,
    as_text,
    from_db,
    from_db_req,
    marks,
    where_equal,
)
from jpixd.store.subscribers import log_change

# What a fan-out adds per active channel whose subscriber the revision matches.
CHANNEL_MESSAGE_INSERT = (
    "INSERT INTO channel_messages (channel_id, kind, purpose, notice_id, revision_id, "
    "state, not_before, created_at, updated_at) VALUES (?, ?, 'notice', ?, ?, 'queued', ?, ?, ?)")
# The channels a fan-out may add messages for: (id, subscriber_id, kind).
ACTIVE_CHANNELS = "SELECT id, subscriber_id, kind FROM channels WHERE state = 'active'"
# A newer report of a notice makes its unsent messages stale (as it does its mail).
SUPERSEDE_MESSAGES = (
    "UPDATE channel_messages SET state = 'skipped', reason = 'superseded', updated_at = ? "
    "WHERE notice_id = ? AND purpose = 'notice' AND state = 'queued' AND claimed_by IS NULL")
_TEST_MESSAGE = (
    "INSERT INTO channel_messages (channel_id, kind, purpose, state, not_before, created_at, "
    "updated_at) VALUES (?, ?, 'test', 'queued', ?, ?, ?)")
# A message's end leaves its claim.
_UNCLAIM = "claimed_by = NULL, lease_until = NULL"
_CHANNELS_OF = ("SELECT * FROM channels WHERE subscriber_id = ? AND state <> 'removed' "
                "ORDER BY id")
# A message's outcomes: queued again for later (a temporary refusal), or failed.
_RETRY = (f"UPDATE channel_messages SET not_before = ?, last_status = ?, last_error = ?, "
          f"updated_at = ?, {_UNCLAIM} WHERE id = ?")
_FAILED = (f"UPDATE channel_messages SET state = 'failed', reason = ?, last_status = ?, "
           f"last_error = ?, updated_at = ?, {_UNCLAIM} WHERE id = ?")
# What the channel's last answer was (shown on the console and the manage page).
_NOTE = "UPDATE channels SET last_status = ?, last_error = ?, updated_at = ? WHERE id = ?"


class ChannelNotFound(LookupError):
    """No such channel for that subscriber (or it was removed)."""


class ChannelNotVerified(ValueError):
    """A channel cannot be made active before its test message was answered."""


def _channel(r: Row) -> Channel:
    return Channel(
        id=int(r["id"]), subscriber_id=int(r["subscriber_id"]), kind=str(r["kind"]),
        url=str(r["url"]), secret=str(r["secret"]), state=str(r["state"]),
        paused_reason=r["paused_reason"], gone_count=int(r["gone_count"]),
        last_status=r["last_status"], last_error=r["last_error"],
        created_at=from_db_req(r["created_at"]), verified_at=from_db(r["verified_at"]))


class ChannelQueries(Queries):
    async def add_channel(self, subscriber_id: int, kind: str, url: str, secret: str,
                          now: datetime, *, actor: str) -> Channel:
        """A new channel, verifying: its test message is queued with it, and it becomes
        active when that message is answered 2xx."""
        async with self.transaction() as tx:
            return await _insert(tx, subscriber_id, kind, url, secret, now, actor)

    async def channels_of(self, subscriber_id: int) -> list[Channel]:
        return [_channel(r) for r in await self._all(_CHANNELS_OF, (subscriber_id,))]

    async def channels_of_many(self, subscriber_ids: list[int]) -> dict[int, list[Channel]]:
        """Each subscriber's channels (the CSV export), by subscriber id."""
        out: dict[int, list[Channel]] = {}
        for start in range(0, len(subscriber_ids), 500):
            part = subscriber_ids[start:start + 500]
            rows = await self._all(f"SELECT * FROM channels WHERE subscriber_id IN "
                                   f"({marks(part)}) AND state <> 'removed' ORDER BY id", part)
            for r in rows:
                out.setdefault(int(r["subscriber_id"]), []).append(_channel(r))
        return out

    async def get_channel(self, subscriber_id: int, channel_id: int) -> Channel:
        row = await self._one("SELECT * FROM channels WHERE id = ? AND subscriber_id = ? "
                              "AND state <> 'removed'", (channel_id, subscriber_id))
        if row is None:
            raise ChannelNotFound(f"subscriber {subscriber_id} has no channel {channel_id}")
        return _channel(row)

    async def set_channel(self, subscriber_id: int, channel_id: int, now: datetime, *,
                          actor: str, active: bool | None = None,
                          url: str | None = None) -> Channel:
        """Pause or resume a channel, or give it a new URL (verified again: a test
        message is queued, as for a new one). A channel never verified stays verifying."""
        async with self.transaction() as tx:
            row = await tx.one(f"SELECT * FROM channels WHERE id = ? AND subscriber_id = ? "
                               f"AND state <> 'removed'{self.for_update}",
                               (channel_id, subscriber_id))
            if row is None:
                raise ChannelNotFound(f"subscriber {subscriber_id} has no channel {channel_id}")
            what = ""
            if url is not None and url != row["url"]:
                what = f"url: {shown(row['url'])} → {shown(url)}"
                await tx.execute("UPDATE channels SET url = ?, state = 'verifying', "
                                 "verified_at = NULL, paused_reason = NULL, gone_count = 0, "
                                 "last_error = NULL, updated_at = ? WHERE id = ?",
                                 (url, now, channel_id))
                await _skip_queued(tx, channel_id, "url changed", now)
                await tx.execute(_TEST_MESSAGE, (channel_id, row["kind"], now, now, now))
            elif active is True and row["verified_at"] is None:
                raise ChannelNotVerified(f"channel {channel_id} has not been verified: its "
                                         "test message was not answered 2xx; send another")
            elif active is True and row["state"] == "paused":
                await tx.execute("UPDATE channels SET state = 'active', paused_reason = NULL, "
                                 "gone_count = 0, updated_at = ? WHERE id = ?", (now, channel_id))
                what = "state: paused → active"
            elif active is False and row["state"] in ("active", "verifying"):
                await tx.execute("UPDATE channels SET state = 'paused', paused_reason = ?, "
                                 "updated_at = ? WHERE id = ?",
                                 ("subscriber" if actor == "self-service" else "operator",
                                  now, channel_id))
                await _skip_queued(tx, channel_id, "channel paused", now)
                what = f"state: {row['state']} → paused"
            if what:
                await log_change(tx, subscriber_id, actor, "channel changed",
                                 f"{row['kind']} #{channel_id} {what}", now)
            got = await tx.one("SELECT * FROM channels WHERE id = ?", (channel_id,))
        assert got is not None
        return _channel(got)

    async def test_channel(self, subscriber_id: int, channel_id: int, now: datetime) -> int:
        """Queue a test message (a paused channel is tested too: that is how an operator
        checks a receiver is back before resuming it), unless one is waiting. Its id."""
        async with self.transaction() as tx:
            row = await tx.one("SELECT kind FROM channels WHERE id = ? AND subscriber_id = ? "
                               "AND state <> 'removed'", (channel_id, subscriber_id))
            if row is None:
                raise ChannelNotFound(f"subscriber {subscriber_id} has no channel {channel_id}")
            # One test waiting at a time: pressing the button again sends no second one
            # (the manage page is the subscriber's, and a URL may be anybody's).
            got = await tx.one("SELECT id FROM channel_messages WHERE channel_id = ? "
                               "AND purpose = 'test' AND state = 'queued'", (channel_id,))
            if got is None:
                got = await tx.one(_TEST_MESSAGE + " RETURNING id",
                                   (channel_id, row["kind"], now, now, now))
        assert got is not None
        return int(got["id"])

    async def remove_channel(self, subscriber_id: int, channel_id: int, now: datetime, *,
                             actor: str) -> None:
        """Removed: nothing more is sent to it; its messages stay in the history."""
        async with self.transaction() as tx:
            if not await _remove(tx, subscriber_id, channel_id, now, actor):
                raise ChannelNotFound(f"subscriber {subscriber_id} has no channel {channel_id}")

    async def import_channels(self, rows: Sequence[tuple[str, Sequence[tuple[str, str]]]],
                              now: datetime, *, actor: str, dry_run: bool,
                              secret: Callable[[], str]) -> list[ImportDiff]:
        """Each listed subscriber's channels made what their CSV row says (the `channels`
        column: jpixd.channels.manage.plan_import), all in one transaction; what changed,
        one line each. A subscriber the file creates has none yet (a dry run creates
        nothing: its channels are all additions). ChannelInvalid: nothing changed."""
        lines: list[ImportDiff] = []
        async with self.transaction(commit=not dry_run) as tx:
            for email, wanted in rows:
                sub = await tx.one("SELECT id FROM subscribers WHERE email = ? "
                                   "AND deleted_at IS NULL", (email,))
                existing = [] if sub is None else [
                    _channel(r) for r in await tx.all(_CHANNELS_OF, (sub["id"],))]
                add, remove = plan_import(existing, list(wanted))
                lines += [ImportDiff(email, "channel removed", kind=c.kind, url=shown(c.url))
                          for c in remove]
                if sub is None:
                    lines += [ImportDiff(email, "channel added", kind=kind, url=shown(url))
                              for kind, url in add]
                    continue
                sid = int(sub["id"])
                for c in remove:
                    await _remove(tx, sid, c.id, now, actor)
                for kind, url in add:
                    key = secret()
                    # A webhook's signing key is said this once (its receiver needs it).
                    said = key if kind == "webhook" and not dry_run else ""
                    lines.append(ImportDiff(email, "channel added", kind=kind, url=shown(url),
                                            signing_key=said))
                    await _insert(tx, sid, kind, url, key, now, actor)
        return lines

    async def claim_channel_messages(self, now: datetime, limit: int, *, claimer: str,
                                     lease_until: datetime) -> list[ChannelMessage]:
        """Queued messages that are due, oldest first, with any whose claim's lease ran
        out (its sender died mid-send), taken under `claimer`'s lease, each with its
        channel as it is now (paused or removed meanwhile: the sender skips it). One
        plan: one trip on SQLite."""
        if await self._one("SELECT 1 AS x FROM channel_messages WHERE state = 'queued' "
                           "AND not_before <= ? LIMIT 1", (now,)) is None:
            return []
        rows = await self.run_plan(_claim_plan(now, limit, claimer, lease_until,
                                               skip_locked=self.skip_locked))
        return [ChannelMessage(
            id=int(r["message_id"]), channel=_channel(r), purpose=str(r["purpose"]),
            notice_id=r["notice_id"], attempts=int(r["attempts"]), change=r["change"],
            content=None if r["content"] is None else _text(r["content"])) for r in rows]

    async def recover_channel_messages(self, claimer: str | None = None) -> int:
        """Claims left by a crash go out again (as `recover_self_mails`)."""
        if claimer is None and not self.sole_claimer:
            return 0
        who, params = ("AND claimed_by = ?", (claimer,)) if claimer is not None else ("", ())
        return await self._write(
            f"UPDATE channel_messages SET {_UNCLAIM} "
            f"WHERE state = 'queued' AND claimed_by IS NOT NULL {who}", params)

    async def renew_channel_leases(self, claimer: str, until: datetime) -> int:
        return await self._write("UPDATE channel_messages SET lease_until = ? "
                                 "WHERE claimed_by = ? AND state = 'queued'", (until, claimer))

    async def channel_message_sent(self, msg: ChannelMessage, now: datetime,
                                   status: int) -> None:
        """Answered 2xx: the message is sent; the channel's run of 404/410 ends, and a
        channel waiting for its test message is verified (active, unless paused)."""
        async with self.transaction() as tx:
            await tx.execute(f"UPDATE channel_messages SET state = 'sent', sent_at = ?, "
                             f"updated_at = ?, last_status = ?, last_error = NULL, {_UNCLAIM} "
                             "WHERE id = ?", (now, now, status, msg.id))
            await tx.execute(
                "UPDATE channels SET gone_count = 0, last_status = ?, last_error = NULL, "
                "verified_at = CASE WHEN ? THEN COALESCE(verified_at, ?) ELSE verified_at END, "
                "state = CASE WHEN ? AND state = 'verifying' THEN 'active' ELSE state END, "
                "updated_at = ? WHERE id = ?",
                (status, msg.purpose == "test", now, msg.purpose == "test", now,
                 msg.channel.id))

    async def channel_message_retry(self, msg: ChannelMessage, now: datetime,
                                    next_at: datetime, status: int | None, error: str) -> None:
        """A temporary refusal: queued again for `next_at`."""
        async with self.transaction() as tx:
            await tx.execute(_RETRY, (next_at, status, error, now, msg.id))
            await tx.execute(_NOTE, (status, error, now, msg.channel.id))

    async def channel_message_failed(self, msg: ChannelMessage, now: datetime,
                                     status: int | None, reason: str) -> None:
        async with self.transaction() as tx:
            await tx.execute(_FAILED, (reason, status, reason, now, msg.id))
            await tx.execute(_NOTE, (status, reason, now, msg.channel.id))

    async def channel_gone(self, msg: ChannelMessage, now: datetime, status: int, *,
                           limit: int, retry_at: datetime | None) -> bool:
        """The URL answered 404 or 410: counted on the channel. At `limit` in a row the
        channel is paused (reason "gone") and its queued messages skipped, never retried
        forever; short of it the message is tried again at `retry_at` (None: failed, as
        a test message is). Whether the channel was paused now."""
        error = f"HTTP {status}: the URL is gone"
        async with self.transaction() as tx:
            row = await tx.one(f"SELECT gone_count FROM channels WHERE id = ?{self.for_update}",
                               (msg.channel.id,))
            count = (int(row["gone_count"]) if row else 0) + 1
            await tx.execute("UPDATE channels SET gone_count = ? WHERE id = ?",
                             (count, msg.channel.id))
            await tx.execute(_NOTE, (status, error, now, msg.channel.id))
            paused = count >= limit
            if paused:
                await tx.execute("UPDATE channels SET state = 'paused', paused_reason = 'gone' "
                                 "WHERE id = ? AND state IN ('active', 'verifying')",
                                 (msg.channel.id,))
            if paused or retry_at is None:
                await tx.execute(_FAILED, ("gone", status, error, now, msg.id))
            else:
                await tx.execute(_RETRY, (retry_at, status, error, now, msg.id))
            if paused:
                await _skip_queued(tx, msg.channel.id, "channel paused", now)
        return paused

    async def channel_message_skipped(self, msg: ChannelMessage, now: datetime,
                                      reason: str) -> None:
        await self._write(f"UPDATE channel_messages SET state = 'skipped', reason = ?, "
                          f"updated_at = ?, {_UNCLAIM} WHERE id = ?", (reason, now, msg.id))

    async def channel_message_release(self, message_id: int) -> None:
        """Claimed but not sent (a shutdown): queued as it was."""
        await self._write("UPDATE channel_messages SET attempts = CASE WHEN attempts > 0 "
                          f"THEN attempts - 1 ELSE 0 END, {_UNCLAIM} WHERE id = ?",
                          (message_id,))

    async def list_channel_messages(self, *, subscriber_id: int | None = None,
                                    channel_id: int | None = None, limit: int = 50,
                                    offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Newest first: what went to a channel (or each of a subscriber's)."""
        where, params = where_equal(("channel_id", channel_id))
        if subscriber_id is not None:
            where.append("channel_id IN (SELECT id FROM channels WHERE subscriber_id = ?)")
            params.append(subscriber_id)
        rows, total = await self._page("channel_messages", where, params, "id DESC",
                                       limit, offset)
        return [_message_json(r) for r in rows], total

    async def channels_in_trouble(self, limit: int = 50) -> list[tuple[Channel, str]]:
        """Channels someone should look at, with their subscriber's address: paused by
        jpixd after repeated 404/410, or verifying with a failed test. Newest first."""
        rows = await self._all(
            "SELECT c.*, s.email AS s_email FROM channels c JOIN subscribers s "
            "ON s.id = c.subscriber_id WHERE s.deleted_at IS NULL AND "
            "((c.state = 'paused' AND c.paused_reason = 'gone') OR "
            "(c.state = 'verifying' AND c.last_error IS NOT NULL)) "
            "ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (limit,))
        return [(_channel(r), str(r["s_email"])) for r in rows]

    async def channel_message_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM channel_messages "
                               "GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}


def _claim_plan(now: datetime, limit: int, claimer: str, lease_until: datetime, *,
                skip_locked: str) -> Plan[list[Row]]:
    due: list[int] = [int(r["id"]) for r in (yield Step(
        "SELECT id FROM channel_messages WHERE state = 'queued' AND not_before <= ? "
        "AND (lease_until IS NULL OR lease_until < ?) "
        f"ORDER BY not_before, id LIMIT ?{skip_locked}", (now, now, limit)))]
    if not due:
        return []
    yield Step("UPDATE channel_messages SET claimed_by = ?, lease_until = ?, "
               f"attempts = attempts + 1 WHERE id IN ({marks(due)})",
               (claimer, lease_until, *due), rows=False)
    rows: list[Row] = (yield Step(
        "SELECT m.id AS message_id, m.purpose, m.notice_id, m.revision_id, m.attempts, "
        "r.change, r.content, c.* FROM channel_messages m "
        "JOIN channels c ON c.id = m.channel_id "
        "LEFT JOIN notice_revisions r ON r.id = m.revision_id "
        f"WHERE m.id IN ({marks(due)}) AND m.state = 'queued' ORDER BY m.id", due))
    return rows


async def _insert(tx: Tx, subscriber_id: int, kind: str, url: str, secret: str,
                  now: datetime, actor: str) -> Channel:
    """A channel, verifying, with its test message queued and the change logged."""
    row = await tx.one(
        "INSERT INTO channels (subscriber_id, kind, url, secret, state, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, 'verifying', ?, ?) RETURNING *",
        (subscriber_id, kind, url, secret, now, now))
    assert row is not None
    await tx.execute(_TEST_MESSAGE, (row["id"], kind, now, now, now))
    await log_change(tx, subscriber_id, actor, "channel added", f"{kind} {shown(url)}", now)
    return _channel(row)


async def _remove(tx: Tx, subscriber_id: int, channel_id: int, now: datetime,
                  actor: str) -> bool:
    """Removed, its unsent messages skipped, the change logged; False: no such channel."""
    if not await tx.execute("UPDATE channels SET state = 'removed', updated_at = ? "
                            "WHERE id = ? AND subscriber_id = ? AND state <> 'removed'",
                            (now, channel_id, subscriber_id)):
        return False
    await _skip_queued(tx, channel_id, "channel removed", now)
    await log_change(tx, subscriber_id, actor, "channel removed", f"#{channel_id}", now)
    return True


async def _skip_queued(tx: Tx, channel_id: int, reason: str, now: datetime) -> None:
    """A channel's unsent messages are not sent (its messages in flight finish)."""
    await tx.execute("UPDATE channel_messages SET state = 'skipped', reason = ?, updated_at = ? "
                     "WHERE channel_id = ? AND state = 'queued' AND claimed_by IS NULL",
                     (reason, now, channel_id))


def _text(content: Any) -> str:
    """A revision's content: SQLite's text, PostgreSQL's jsonb as asyncpg hands it."""
    return content if isinstance(content, str) else str(content)


def _message_json(r: Row) -> dict[str, Any]:
    return {"id": r["id"], "channel_id": r["channel_id"], "kind": r["kind"],
            "purpose": r["purpose"], "notice_id": r["notice_id"], "state": r["state"],
            "reason": r["reason"], "attempts": r["attempts"], "last_status": r["last_status"],
            "last_error": r["last_error"], "created_at": as_text(r["created_at"]),
            "sent_at": as_text(r["sent_at"])}
