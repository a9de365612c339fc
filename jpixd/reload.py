"""What a new configuration changes, and what of it can change while running. Pure.

SIGHUP re-reads the configuration and its secrets (`systemctl reload jpixd`). Each
setting says how a reload takes it where it is declared (`jpixd.config.live` and
`restart`): a live section is applied at once by whatever uses it (`Loop.apply`: sources,
the log level, sending settings and rates, templates and mail headers, the guard's
thresholds, Backlog settings, `[web]`, the admin token); a restart-only setting (the
listen addresses, `state_dir` and the database, the transport and its endpoint, the SQS
queue, the archive, the supervisor, SSM, the cluster) is reported and kept as it runs.
Adding or removing a section that has a loop of its own needs a restart too. A
configuration with errors is refused whole; the running one stays.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, TypeVar

from jpixd.config import Config, Secret

T = TypeVar("T")


@dataclass(frozen=True)
class ReloadPlan:
    effective: Config  # the new config, with what needs a restart kept as it runs
    live: tuple[str, ...]  # what changes now
    restart: tuple[str, ...]  # what changed in the file but waits for a restart


def _section(old: Any, new: Any) -> bool:
    """Two values a reload looks into, field by field (a section present in both)."""
    return (is_dataclass(new) and not isinstance(new, type | Secret)
            and type(old) is type(new))


def _marked(old: Any, new: Any, how: str, prefix: str = "") -> list[str]:
    """The names of the settings marked `how` that differ (a restart-only one by its
    group), in declaration order, each once."""
    out: list[str] = []
    for f in fields(new):
        o, n = getattr(old, f.name), getattr(new, f.name)
        if f.metadata.get("reload") == how:
            name = f.metadata.get("group") or prefix + f.name
            if o != n and name not in out:
                out.append(name)
        elif _section(o, n):
            out += [x for x in _marked(o, n, how, f"{prefix}{f.name}.") if x not in out]
    return out


def _keep_restart_only(old: T, new: T) -> T:
    """`new`, with every restart-only setting as it runs now."""
    changes = {}
    for f in fields(new):  # type: ignore[arg-type]  # a config dataclass
        o, n = getattr(old, f.name), getattr(new, f.name)
        if f.metadata.get("reload") == "restart":
            changes[f.name] = o
        elif _section(o, n):
            changes[f.name] = _keep_restart_only(o, n)
    return replace(new, **changes)  # type: ignore[type-var]


def plan(old: Config, new: Config) -> ReloadPlan:
    restart = _marked(old, new, "restart")
    eff = _keep_restart_only(old, new)
    # A loop of its own appears or goes only with a start.
    if (old.backlog is None) != (new.backlog is None):
        restart.append("backlog (added or removed)")
        eff = replace(eff, backlog=old.backlog)
    if bool([s for s in old.sources if s.enabled]) != bool([s for s in new.sources
                                                           if s.enabled]):
        restart.append("sources (the first or the last one)")
        eff = replace(eff, sources=old.sources)
    return ReloadPlan(eff, tuple(_marked(old, eff, "live")), tuple(restart))
