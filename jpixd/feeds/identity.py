"""One notice per incident: which open notice a new report continues, which report is
older than what we already have, and which open notices left their source. Pure.

NTT East publishes every 第N報 at a new URL; a list row changes when NTT widens the area
or adds the recovery time. A new key is therefore not a new incident when it continues
an open notice: same source and kind, the same or a close start, an overlapping area,
and a report number that is not older. Whether NTT West adds a page per report is not
known; both shapes end up here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from jpixd.model import Notice, NoticeKind, NoticeStatus, StoredNotice

# A later report may correct the start (「7時15分頃」 → 「7時10分頃」); an incident does not
# start hours apart from itself.
FAILURE_START_TOLERANCE = timedelta(hours=3)


def _areas_overlap(a: Notice, b: Notice) -> bool:
    # A notice whose area could not be read overlaps every area (as in the fan-out).
    return not a.prefectures or not b.prefectures or bool(set(a.prefectures) &
                                                             set(b.prefectures))


def _start_distance(a: Notice, b: Notice) -> timedelta | None:
    """How far apart the two starts are, or None if they cannot be the same incident."""
    if a.starts_at is None or b.starts_at is None:
        return None
    delta = abs(a.starts_at - b.starts_at)
    if a.kind == NoticeKind.FAILURE:
        return delta if delta <= FAILURE_START_TOLERANCE else None
    return delta if delta == timedelta(0) else None


def continues(old: Notice, new: Notice) -> bool:
    """Whether `new` (seen under a key we do not know) is a report of `old`.

    A start a little apart is accepted only from a follow-up report (第2報 and later):
    two failures an hour apart in one prefecture are two incidents unless NTT says the
    second report continues the first. Without a report number, the start must match.
    """
    if old.kind != new.kind or old.carrier != new.carrier or old.source != new.source:
        return False
    if old.kind == NoticeKind.CONSTRUCTION and set(old.prefectures) != set(new.prefectures):
        return False  # works in other prefectures at the same hour are other works
    distance = _start_distance(old, new)
    if distance is None or not _areas_overlap(old, new):
        return False
    follow_up = new.report_number is not None and new.report_number > 1
    return distance == timedelta(0) or follow_up


def continued(open_notices: Sequence[StoredNotice], new: Notice) -> StoredNotice | None:
    """The open notice `new` continues: the closest start, then the most recent."""
    if new.report_number == 1:
        return None  # a 第1報 is a new incident by definition
    fits = [s for s in open_notices if continues(s.notice, new)]
    if not fits:
        return None

    def rank(s: StoredNotice) -> tuple[timedelta, float]:
        distance = _start_distance(s.notice, new)
        assert distance is not None
        return distance, -s.last_changed.timestamp()

    return min(fits, key=rank)


def older_report(stored: Notice, new: Notice) -> bool:
    """A report older than the one the notice already holds (第1報 still listed beside 第3報):
    it must never turn the notice back."""
    return (new.report_number is not None and stored.report_number is not None
            and new.report_number < stored.report_number)


def withdrawn(open_notices: Iterable[StoredNotice], seen: set[int],
              now: datetime) -> list[StoredNotice]:
    """Open notices a complete poll no longer showed: a failure gone without a recovery,
    a scheduled construction gone before its start. Construction already under way or
    past its start simply ages off NTT's lists and is left as it was."""
    out = []
    for s in open_notices:
        if s.id in seen:
            continue
        n = s.notice
        if n.kind == NoticeKind.FAILURE:
            out.append(s)
        elif n.status in (NoticeStatus.SCHEDULED, NoticeStatus.POSTPONED) and (
                n.starts_at is None or n.starts_at > now):
            out.append(s)
    return out
