"""What state a notice is in now, as a reader should see it. Pure.

NTT marks a work 予定 and often says nothing more: on 12/6 works of 12/3 and 12/5 still
read 【工事・予定】 (reader review). Time moves by itself here: a scheduled work is 実施中
while one of its windows runs and 終了 once the last has ended, whatever the carrier has
said since; what the carrier said (中止, 延期, 完了) stands.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from jpixd.mail.render import STATUS_LABELS
from jpixd.model import JST, Notice, NoticeKind, NoticeStatus, TimeWindow, notice_windows

IN_PROGRESS = "実施中"
ENDED = "終了"
# A window without an end is taken to last this long (what the calendar shows, too).
OPEN_ENDED = timedelta(hours=1)


def _planned(n: Notice) -> list[TimeWindow]:
    windows = notice_windows(n)
    return [w for w in windows if not w.reserve] or windows


def label_now(n: Notice, now: datetime) -> str:
    """The state's word now: the carrier's, or for a scheduled work what the clock says."""
    stated = STATUS_LABELS.get(n.status, str(n.status))
    if n.kind != NoticeKind.CONSTRUCTION or n.status not in (
            NoticeStatus.SCHEDULED, NoticeStatus.IN_PROGRESS):
        return stated
    windows = _planned(n)
    if not windows:
        return stated
    spans = [(w.start, w.end if w.end and w.end > w.start else w.start + OPEN_ENDED)
             for w in windows]
    if any(start <= now < end for start, end in spans):
        return IN_PROGRESS
    if now >= max(end for _, end in spans):
        return ENDED
    return stated


def clock_changed_at(n: Notice, now: datetime) -> datetime | None:
    """When the clock last changed what `label_now` says (a window's start or the last
    end), or None while the carrier's word stands: a feed's `updated` moves with it, so a
    reader sees 実施中 and 終了 as changes."""
    label = label_now(n, now)
    if label not in (IN_PROGRESS, ENDED):
        return None
    spans = [(w.start, w.end if w.end and w.end > w.start else w.start + OPEN_ENDED)
             for w in _planned(n)]
    if label == ENDED:
        return max(end for _, end in spans)
    return max(start for start, end in spans if start <= now < end)


def ended_by_time(n: Notice, now: datetime) -> bool:
    return label_now(n, now) == ENDED


# Each state's badge: its short word and its colour's class (jpixd.css `.st-…`).
BADGES = {
    "発生中": "failing", "一部回復（復旧作業中）": "partial", "回復": "recovered",
    "予定": "planned", IN_PROGRESS: "running", ENDED: "done", "完了": "done",
    "中止": "cancelled", "延期": "postponed", "掲載終了": "done",
}
SHORT = {"一部回復（復旧作業中）": "一部回復", "掲載終了": "取消"}


def badge(n: Notice, now: datetime) -> tuple[str, str]:
    """(word, colour class) of the state now: the board's colour is the state's, not the
    kind's (a recovered failure is not red, a cancelled work does not look planned)."""
    label = label_now(n, now)
    return SHORT.get(label, label), BADGES.get(label, "done")


def today_works(windows: list[TimeWindow], now: datetime) -> bool:
    """Whether a work has a window on today's date (JST) that has not ended."""
    today = now.astimezone(JST).date()
    return any(w.start.astimezone(JST).date() <= today
               <= (w.end or w.start).astimezone(JST).date() and (w.end or w.start) > now
               for w in windows if not w.reserve)
