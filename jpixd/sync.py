"""`jpixd subscribers sync FILE.csv`: the old system's full export applied as the whole
list, right before the cut-over (issue 23). Pure: what a sync does, decided before any
write.

- Addresses new to jpixd are added and changed fields updated, as an import does.
- Addresses absent from the file are unsubscribed (actor `sync`): the old system let them go.
- An opt-out jpixd knows of (unsubscribed or suppressed here) is never undone by the
  file, whatever it says: the subscriber's word stands (特定電子メール法).
- A subscriber who signed up here (self-service, the admin API, the console) since the
  last sync or import is not removed for being absent from the old system's list: the
  old system never heard of them.
- A file that would remove more than a share of the subscribers is refused unless the
  operator allows that many (`--allow-removals N`): a truncated export must not
  unsubscribe half the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jpixd.model import Subscriber, SubscriberStatus

# More than this share of the live subscribers removed by one file needs --allow-removals.
REMOVAL_SHARE = 0.10
_REMOVABLE = (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)


@dataclass(frozen=True)
class Removals:
    removed: list[Subscriber]  # to unsubscribe
    kept_here: list[str]  # absent from the file, but signed up here since the last sync


def removals(existing: dict[str, Subscriber], in_file: set[str],
             signed_up_here: set[str]) -> Removals:
    absent = [s for email, s in sorted(existing.items())
              if email not in in_file and s.status in _REMOVABLE]
    return Removals([s for s in absent if s.email not in signed_up_here],
                    [s.email for s in absent if s.email in signed_up_here])


def refusal(removed: int, live: int, allowed: int | None) -> str | None:
    """Why the sync must not go ahead (None: it may): more removals than allowed, or,
    without --allow-removals, more than REMOVAL_SHARE of the live subscribers."""
    if allowed is not None:
        if removed > allowed:
            return (f"the file would unsubscribe {removed} subscribers, more than the "
                    f"{allowed} allowed (--allow-removals {allowed})")
        return None
    limit = int(live * REMOVAL_SHARE)
    if removed > limit:
        return (f"the file would unsubscribe {removed} of {live} subscribers, more than "
                f"{REMOVAL_SHARE:.0%}: check that the export is whole, then run again with "
                f"--allow-removals {removed}")
    return None


def in_file(rows: Sequence[tuple[Subscriber, frozenset[str]]]) -> set[str]:
    return {s.email for s, _ in rows}
