"""What a new configuration changes, and what of it can change while running. Pure.

SIGHUP re-reads the configuration and its secrets (`systemctl reload jpixd`). What a
running daemon can take on at once: sources (added, removed, changed), the log level,
sending settings and rates, templates and mail headers, the guard's thresholds,
Backlog settings, the admin token, `[web]` (link keys, base URL, limits). What needs
a restart is reported and left as it was: the listen addresses, `state_dir` and the
database, the transport and its endpoint, the SQS queue, the supervisor, SSM, adding or
removing a section that has a loop of its own. A configuration with errors is refused
whole; the running one stays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jpixd.config import Config


@dataclass(frozen=True)
class ReloadPlan:
    effective: Config  # the new config, with what needs a restart kept as it runs
    live: tuple[str, ...]  # what changes now
    restart: tuple[str, ...]  # what changed in the file but waits for a restart


def _restart_fields(old: Config, new: Config) -> list[str]:
    out = []
    for name in ("state_dir", "database_url", "supervisor", "ssm", "cluster"):
        if getattr(old, name) != getattr(new, name):
            out.append(name)
    if (old.http.listen, old.http.public_listen, old.http.header_timeout,
            old.http.body_timeout, old.http.max_connections) != (
            new.http.listen, new.http.public_listen, new.http.header_timeout,
            new.http.body_timeout, new.http.max_connections):
        out.append("http")
    om, nm = old.mail, new.mail
    if (om.transport, om.smtp, om.file, om.ses.region, om.ses.endpoint_url,
            om.ses.configuration_set) != (nm.transport, nm.smtp, nm.file, nm.ses.region,
                                          nm.ses.endpoint_url, nm.ses.configuration_set):
        out.append("mail.transport")
    ob, nb = old.bounces, new.bounces
    if (ob.queue_url, ob.region, ob.endpoint_url, ob.wait_time, ob.visibility_timeout) != \
            (nb.queue_url, nb.region, nb.endpoint_url, nb.wait_time, nb.visibility_timeout):
        out.append("bounces.queue")
    if old.archive != new.archive:
        out.append("archive")
    if (old.backlog is None) != (new.backlog is None):
        out.append("backlog (added or removed)")
    if bool([s for s in old.sources if s.enabled]) != bool([s for s in new.sources
                                                           if s.enabled]):
        out.append("sources (the first or the last one)")
    return out


def _keep_running(old: Config, new: Config, restart: list[str]) -> Config:
    """`new`, but with every part that needs a restart as it runs now."""
    eff = replace(new, state_dir=old.state_dir, database_url=old.database_url,
                  supervisor=old.supervisor, ssm=old.ssm, cluster=old.cluster,
                  http=replace(new.http, listen=old.http.listen,
                               public_listen=old.http.public_listen,
                               header_timeout=old.http.header_timeout,
                               body_timeout=old.http.body_timeout,
                               max_connections=old.http.max_connections))
    if "mail.transport" in restart:
        ses = replace(new.mail.ses, region=old.mail.ses.region,
                      endpoint_url=old.mail.ses.endpoint_url,
                      configuration_set=old.mail.ses.configuration_set)
        eff = replace(eff, mail=replace(new.mail, transport=old.mail.transport,
                                        smtp=old.mail.smtp, file=old.mail.file, ses=ses))
    if "bounces.queue" in restart:
        b = old.bounces
        eff = replace(eff, bounces=replace(new.bounces, queue_url=b.queue_url, region=b.region,
                                           endpoint_url=b.endpoint_url, wait_time=b.wait_time,
                                           visibility_timeout=b.visibility_timeout))
    if "archive" in restart:
        eff = replace(eff, archive=old.archive)
    if "backlog (added or removed)" in restart:
        eff = replace(eff, backlog=old.backlog)
    if "sources (the first or the last one)" in restart:
        eff = replace(eff, sources=old.sources)
    return eff


def plan(old: Config, new: Config) -> ReloadPlan:
    restart = _restart_fields(old, new)
    eff = _keep_running(old, new, restart)
    live = [name for name in ("sources", "logging", "sending", "mail", "bounces", "backlog",
                              "timezone", "retention", "web")
            if getattr(old, name) != getattr(eff, name)]
    if old.http.admin_token != eff.http.admin_token:  # a Secret's value counts
        live.append("http.admin_token")
    return ReloadPlan(eff, tuple(live), tuple(restart))
