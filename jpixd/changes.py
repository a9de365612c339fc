"""What a new revision of a notice changed, as a NOC engineer reads it. Pure.

「内容が更新されました」 and the whole text again made the reader find the difference
(reader review): each revision now carries its changes (`Notice.changes`), field by
field, before → after, in the words the mail and the pages use; the mail's ■変更点,
the notice page's reports and the calendar's descriptions show them.
"""

from __future__ import annotations

from datetime import datetime

from jpixd.mail.render import STATUS_LABELS, short_span
from jpixd.model import Changed, Notice, NoticeKind, TimeWindow, notice_windows, recovered_at
from jpixd.prefectures import NAME_BY_CODE

NONE = "（なし）"


# Times as a subject writes them (「12/10(木) 01:00～05:00」): a before and an after
# each fit one line of a phone's mail app, the year being plain from the notice.
def _span(w: TimeWindow) -> str:
    return short_span(w.start, w.end) + ("（予備日）" if w.reserve else "")


def _at(t: datetime | None) -> str:
    return short_span(t, None) or NONE


def times_text(n: Notice) -> str:
    """Every window, as a subject writes times, or "" when there is none."""
    return "、".join(_span(w) for w in notice_windows(n))


def _times(n: Notice) -> str:
    return times_text(n) or NONE


def _listed(items: tuple[str, ...], names: dict[str, str] | None = None) -> str:
    return "、".join(names.get(x, x) if names else x for x in items) or NONE


def what_changed(old: Notice, new: Notice) -> tuple[Changed, ...]:
    """Each thing a reader would see differ, in the order the mail lists them."""
    out: list[Changed] = []

    def differs(label: str, before: str, after: str) -> None:
        if before != after:
            out.append(Changed(label, before, after))

    differs("状況", STATUS_LABELS.get(old.status, str(old.status)),
            STATUS_LABELS.get(new.status, str(new.status)))
    if new.kind == NoticeKind.CONSTRUCTION:
        differs("工事日時", _times(old), _times(new))
    else:
        # A failure's end is its recovery: said as ■回復日時, not as a changed range.
        differs("発生日時", _at(old.starts_at), _at(new.starts_at))
        recovered = recovered_at(new)
        if recovered is not None and recovered_at(old) != recovered:
            differs("回復日時", _at(recovered_at(old)), _at(recovered))
    differs("対象地域", _listed(tuple(sorted(old.prefectures)), NAME_BY_CODE),
            _listed(tuple(sorted(new.prefectures)), NAME_BY_CODE))
    differs("地域の詳細", _listed(tuple(sorted(old.localities))),
            _listed(tuple(sorted(new.localities))))
    differs("影響サービス", _listed(tuple(sorted(old.services))),
            _listed(tuple(sorted(new.services))))
    differs("件名", old.title, new.title)
    if old.body != new.body:
        out.append(Changed("内容", "", "本文が更新されました（下記 ■内容）"))
    return tuple(out)
