"""Turns the configured names (project key, issue type, priority, close status) into
Backlog's ids once, with errors that say what is wrong and what Backlog does have."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jpixd.backlog.client import BacklogAuthRefused, BacklogClient, BacklogRejected
from jpixd.config import BacklogConfig

HIGH_PRIORITY_ID = 2
# Backlog's priorities are fixed, but a Japanese space names them 高/中/低 and an English
# one High/Normal/Low: either name works in the config, whatever the space's language.
PRIORITY_IDS = {"high": 2, "高": 2, "normal": 3, "中": 3, "low": 4, "低": 4}


class BacklogConfigError(Exception):
    """The [backlog] settings do not match the Backlog space (key, project, type, …)."""


@dataclass(frozen=True)
class Project:
    id: int
    key: str
    issue_type_id: int
    priority_id: int  # for bounce issues
    high_priority_id: int  # for guard issues
    close_status_id: int


def _pick(items: Any, wanted: str, what: str, where: str) -> int:
    """The id of the item named `wanted` (or whose id it is), else a clear error."""
    if not isinstance(items, list):
        raise BacklogConfigError(f"Backlog sent no list of {what}s for {where}")
    for item in items:
        if not isinstance(item, dict):
            continue
        if str(item.get("id")) == wanted.strip() or \
                str(item.get("name", "")).strip().casefold() == wanted.strip().casefold():
            return int(item["id"])
    names = ", ".join(f"{i.get('name')} ({i.get('id')})" for i in items if isinstance(i, dict))
    raise BacklogConfigError(f"backlog.{what}: {wanted!r} is not a {what} of {where} "
                             f"(it has: {names or 'none'})")


async def resolve(client: BacklogClient, cfg: BacklogConfig) -> Project:
    """Raises BacklogConfigError for settings Backlog contradicts; BacklogUnavailable
    passes through (try again later)."""
    try:
        project = await client.project(cfg.project_key)
    except BacklogAuthRefused as exc:
        raise BacklogConfigError(f"backlog.api_key: Backlog refused the API key ({exc})") \
            from None
    except BacklogRejected as exc:
        if exc.not_found:
            raise BacklogConfigError(f"backlog.project_key: no project {cfg.project_key!r} "
                                     f"in {cfg.base_url} ({exc})") from None
        raise BacklogConfigError(f"backlog.project_key: {exc}") from None
    where = f"project {cfg.project_key}"
    issue_type_id = _pick(await client.issue_types(cfg.project_key), cfg.issue_type,
                          "issue_type", where)
    priorities = await client.priorities()
    wanted = str(PRIORITY_IDS.get(cfg.priority.strip().casefold(), cfg.priority))
    priority_id = _pick(priorities, wanted, "priority", "this Backlog space")
    high_id = _pick(priorities, str(HIGH_PRIORITY_ID), "priority", "this Backlog space")
    _pick(await client.statuses(cfg.project_key), str(cfg.close_status_id),
          "close_status_id", where)
    try:
        project_id = int(project["id"])
    except (KeyError, TypeError, ValueError):
        raise BacklogConfigError(f"{where}: Backlog answered without a numeric project id "
                                 f"({str(project.get('id'))[:40]!r})") from None
    return Project(id=project_id, key=str(project.get("projectKey", cfg.project_key)),
                   issue_type_id=issue_type_id, priority_id=priority_id,
                   high_priority_id=high_id, close_status_id=cfg.close_status_id)
