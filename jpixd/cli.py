"""The `jpixd` command: parse arguments, load config, configure logging, run.

Exit codes: 0 done, 1 the daemon gave up (a loop kept crashing) or a command failed,
2 bad usage, configuration or input (nothing was changed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import structlog

from jpixd import __version__, logs
from jpixd.config import Config, ConfigError, load_default, load_path
from jpixd.subscribers import CsvRow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jpixd", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML config (default: the embedded default, state in ./var)")
        return sp

    run = with_config(sub.add_parser("run", help="run the daemon"))
    run.add_argument("--baseline", action="store_true",
                     help="record what every source publishes now without mailing it (cut-over)")
    run.add_argument("--shadow", action="store_true",
                     help="run everything but send nothing: every mail is rendered and kept "
                          "(`jpixd shadow report`), until `jpixd cutover`")
    shadow = sub.add_parser("shadow", help="what a shadow run would have sent")
    shadow_actions = shadow.add_subparsers(dest="action", required=True)
    report = with_config(shadow_actions.add_parser(
        "report", help="per notice and recipient, the mail a shadow run kept"))
    report.add_argument("--notice", type=int, metavar="ID", help="one notice only")
    report.add_argument("--since", metavar="ISO", help="kept at or after this time")
    report.add_argument("--full", action="store_true",
                        help="print each mail's text as its recipient would read it")
    cut = with_config(sub.add_parser(
        "cutover", help="end shadow mode: everything seen so far counts as announced"))
    cut.add_argument("--yes", action="store_true", help="do it (without: say what it would do)")
    cut.add_argument("--since", metavar="ISO",
                     help="the moment the old system stopped sending: what was first seen "
                          "from then on is mailed by the next run")
    with_config(sub.add_parser("check-config", help="validate the config and exit"))
    test = with_config(sub.add_parser(
        "send-test", help="send a sample notice through the configured transport"))
    test.add_argument("--to", required=True, metavar="ADDRESS",
                      help="e.g. success@simulator.amazonses.com (see the README)")
    mig = with_config(sub.add_parser("migrate", help="apply database migrations and exit"))
    mig.add_argument("--dry-run", action="store_true",
                     help="say which migrations would be applied (and which of them older "
                          "releases cannot run on), change nothing")
    mv = with_config(sub.add_parser(
        "migrate-to", help="copy this host's SQLite database into an empty PostgreSQL one "
                           "(one host to several)"))
    mv.add_argument("url", metavar="URL", help="postgresql://user@host:port/database")
    mv.add_argument("--password", metavar="REF",
                    help="ssm:/path, env:VAR or file:/path (default: $JPIXD_DATABASE_PASSWORD)")
    mv.add_argument("--yes", action="store_true",
                    help="do it (without: check everything and say what it would copy)")
    bk = with_config(sub.add_parser(
        "backup", help="a consistent copy of the state, taken while the daemon runs"))
    bk.add_argument("dest", metavar="DEST", help="a folder, or s3://bucket/prefix")
    bk.add_argument("--label", metavar="WORD",
                    help="added to the copy's name (e.g. pre-migrate), letters and digits")
    rs = with_config(sub.add_parser(
        "restore", help="put a backup in place of the state (the daemon stopped)"))
    rs.add_argument("src", metavar="SRC", help="a backup file, or the newest one in a folder "
                    "or under s3://bucket/prefix")
    sub.add_parser("version", help="print the version")
    parse = sub.add_parser("parse", help="show what a saved page or URL yields (no database)")
    parse.add_argument("--kind", required=True, choices=("rss", "atom", "json", "ntt-east",
                                                         "ntt-west"))
    parse.add_argument("target", metavar="FILE|URL")
    parse.add_argument("--now", metavar="ISO",
                       help="the time to read year-less dates against (default: now)")
    parse.add_argument("--json", action="store_true", help="print only the JSON")
    parse.add_argument("--details", type=Path, metavar="DIR",
                       help="read linked detail pages from DIR by file name (default: "
                            "beside FILE when there; else fetched)")
    subs = sub.add_parser("subscribers", help="import or export subscribers as CSV")
    actions = subs.add_subparsers(dest="action", required=True)
    imp = with_config(actions.add_parser(
        "import", help="create or update subscribers from a CSV file (all rows or none)"))
    imp.add_argument("file", type=Path, help="CSV, UTF-8 or Shift_JIS; lists separated by ';'")
    imp.add_argument("--dry-run", action="store_true",
                     help="check, count and show each change, write nothing")
    imp.add_argument("--reactivate", action="store_true",
                     help="let a status column make unsubscribed or suppressed subscribers "
                          "active again (they opted out: only with their consent)")
    sync = with_config(actions.add_parser(
        "sync", help="apply the old system's whole list: add, change, unsubscribe the absent"))
    sync.add_argument("file", type=Path, help="the old system's full export (import's CSV)")
    sync.add_argument("--dry-run", action="store_true",
                      help="print the plan (adds, changes, removals, kept opt-outs), write nothing")
    sync.add_argument("--allow-removals", type=int, metavar="N",
                      help="allow up to N unsubscribed (default: at most 10%% of the list)")
    exp = with_config(actions.add_parser("export", help="write every subscriber as CSV"))
    exp.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    exp.add_argument("--changed-since", metavar="ISO",
                     help="only those changed since (a rollback to the old system); "
                          "deleted ones as unsubscribed")
    return p


def load_config(path: Path | None) -> Config:
    return load_path(path) if path is not None else load_default()


def _print_errors(err: ConfigError, origin: str) -> None:
    print(f"jpixd: configuration {origin} has {len(err.errors)} error(s):", file=sys.stderr)
    for line in err.errors:
        print(f"  {line}", file=sys.stderr)


async def _check(cfg: Config) -> list[str]:
    from jpixd.app import state_dir_writable, token_problem
    from jpixd.secrets import resolve_ssm

    problems: list[str] = []
    try:
        resolved = await resolve_ssm(cfg)
        # What `run` refuses, this refuses too (the deploy hook's gate before a switch).
        if resolved.http.admin_token is not None:
            problem = token_problem(resolved.http.admin_token.get())
            if problem:
                problems.append(problem)
    except ConfigError as err:
        problems.extend(err.errors)
    why = state_dir_writable(cfg.state_dir)
    if why:
        problems.append(why)
    return problems


def _run(cfg: Config, baseline: bool, path: Path | None = None, *,
         shadow: bool = False) -> int:
    from jpixd.app import Daemon, ModeRefused
    from jpixd.statelock import StateBusy
    from jpixd.store import StoreError
    from jpixd.store.migrate import SchemaTooNew

    logs.configure(cfg.logging.level, cfg.logging.format)
    # Everything imported so far lives as long as the process: moved out of the cyclic
    # collector's sight, so that its passes (frequent while a poll allocates) are short.
    gc.freeze()
    try:
        return asyncio.run(Daemon(cfg, baseline=baseline, shadow=shadow,
                                  reload_from=lambda: load_config(path)).run())
    except ModeRefused as err:
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as err:
        _print_errors(err, cfg.origin)
        return EXIT_CONFIG
    except StateBusy as err:
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except SchemaTooNew as err:  # waits for the newer jpixd; a restart changes nothing
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as err:  # a damaged or unreadable database: said plainly
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_FAILED


async def _migrate_plan(cfg: Config) -> int:
    """`migrate --dry-run`: what `migrate` would apply (the deploy hook snapshots a shared
    database first when it would apply any)."""
    from jpixd.app import open_unmigrated
    from jpixd.store import migrate as sqlite_migrate
    from jpixd.store.pg import migrate as pg_migrate

    if not cfg.postgres and not cfg.database_path.exists():
        version, where = 0, f"database {cfg.database_path} (not made yet)"
    else:
        store, name = await open_unmigrated(cfg)
        where = f"{'PostgreSQL ' if cfg.postgres else ''}database {name}"
        try:
            version = await store.schema_version()
        finally:
            await store.close()
    bundled = pg_migrate.bundled() if cfg.postgres else sqlite_migrate.bundled()
    pending = [m for m in bundled if m.version > version]
    if not pending:
        print(f"{where} is at schema version {version}: up to date")
        return EXIT_OK
    breaking = [m.version for m in pending if not m.older_ok]
    print(f"{where} is at schema version {version}: would apply "
          f"{[m.version for m in pending]}"
          + (f"; older releases cannot run on {breaking}" if breaking and version else ""))
    return EXIT_OK


async def _migrate(cfg: Config) -> int:
    from jpixd.app import open_migrated
    from jpixd.model import utcnow

    # Both backends migrate as the store opens; PostgreSQL under an advisory lock, so
    # that hosts starting together apply each migration once.
    store, applied = await open_migrated(cfg, utcnow)
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    where = "PostgreSQL database" if cfg.postgres else f"database {cfg.database_path}"
    print(f"{where} is at schema version {version}"
          + (f" (applied {applied})" if applied else ""))
    return EXIT_OK


def _import(cfg: Config, path: Path, dry_run: bool, reactivate: bool = False) -> int:
    from jpixd.cliargs import csv_rows

    rows = csv_rows(path, "imported", allow_http=cfg.channels.allow_http)
    if rows is None:
        return EXIT_CONFIG
    return asyncio.run(_import_rows(cfg, path, rows, dry_run, reactivate))


async def _import_rows(cfg: Config, path: Path, rows: list[CsvRow], dry_run: bool,
                       reactivate: bool) -> int:
    from jpixd.app import open_store
    from jpixd.channels.csvimport import import_channels
    from jpixd.channels.manage import ChannelInvalid
    from jpixd.model import utcnow
    store = await open_store(cfg, utcnow)
    try:
        result = await store.import_subscribers([(r.subscriber, r.columns) for r in rows],
                                                utcnow(), dry_run=dry_run,
                                                reactivate=reactivate)
        try:
            channels = await import_channels(store, rows, "import", dry_run=dry_run,
                                             now=utcnow())
        except ChannelInvalid as exc:
            print(f"{path}: channels: {exc} (subscribers imported; channels unchanged)",
                  file=sys.stderr)
            return EXIT_CONFIG
    finally:
        await store.close()
    for line in channels:  # a new webhook's signing key is said here, once
        print(f"  {line}")
    if dry_run:
        for line in result.diffs:
            print(f"  {line}")
    note = " (dry run: nothing written)" if dry_run else ""
    kept = (f", {result.kept} left unsubscribed or suppressed (--reactivate to change "
            "that)") if result.kept else ""
    print(f"{path}: {len(rows)} rows: {result.created} created, {result.updated} updated, "
          f"{result.unchanged} unchanged{kept}{note}")
    return EXIT_OK


async def _export_text(cfg: Config, since: datetime | None) -> str:
    from jpixd.app import open_store
    from jpixd.model import utcnow
    from jpixd.subscribers import to_csv

    store = await open_store(cfg, utcnow)
    try:
        if since is not None:  # for the old system, which has no channels: its columns
            return to_csv(await store.subscribers_changed_since(since))
        subscribers = await store.all_subscribers()
        channels = await store.channels_of_many([s.id for s in subscribers if s.id])
        return to_csv(subscribers, channels)
    finally:
        await store.close()


def _export(cfg: Config, output: Path | None, changed_since: str | None = None) -> int:
    from jpixd.cliargs import aware_time

    ok, since = aware_time("--changed-since", changed_since)
    if not ok:
        return EXIT_CONFIG
    text = asyncio.run(_export_text(cfg, since))
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)  # never a half-written export under the real name
    return EXIT_OK


def _backup_or_restore(args: argparse.Namespace, cfg: Config) -> int:
    from jpixd.backup import BackupError, backup, restore
    from jpixd.model import utcnow
    from jpixd.statelock import StateBusy
    from jpixd.store.migrate import bundled

    try:
        if args.command == "backup":
            if args.label is not None and not re.fullmatch(r"[a-z0-9-]{1,40}", args.label):
                raise BackupError(f"--label {args.label!r}: lower-case letters, digits and "
                                  "hyphens only")
            where = asyncio.run(backup(cfg, args.dest, utcnow(), label=args.label))
            print(f"jpixd: backed up to {where}")
            return EXIT_OK
        name, kept = asyncio.run(restore(cfg, args.src, utcnow(), bundled()[-1].version))
    except (BackupError, StateBusy) as err:
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as err:
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"jpixd: restored {name} into {cfg.database_path}"
          + (f"; the database it replaced is kept as {kept}" if kept else ""))
    return EXIT_OK


def _check_config(cfg: Config, origin: str) -> int:
    problems = asyncio.run(_check(cfg))
    if problems:
        _print_errors(ConfigError(problems), origin)
        return EXIT_CONFIG
    print(f"jpixd: configuration {origin} is valid "
          f"({len(cfg.sources)} sources, transport {cfg.mail.transport})")
    if cfg.postgres:
        print("jpixd: note: PostgreSQL is prepared by `jpixd migrate`; `jpixd run` on it "
              "waits for its store (issue 16)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"jpixd {__version__}")
        return EXIT_OK
    if args.command == "parse":
        from jpixd.parsecmd import run_parse

        logs.configure("warning", "console", stream=sys.stderr)
        return run_parse(args.kind, args.target, args.now, only_json=args.json,
                         details=args.details)
    # The database, its backups, exports and the outbox hold subscribers' addresses:
    # never world-readable, whatever umask the shell had, whichever command creates them
    # first (`migrate` does, in the deploy hook; systemd's unit sets 0027 for `run`).
    os.umask(os.umask(0o027) | 0o027)
    origin = str(args.config) if args.config else "<embedded default>"
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        _print_errors(err, origin)
        return EXIT_CONFIG
    from jpixd.store import StoreError
    from jpixd.store.migrate import SchemaTooNew

    try:
        return _command(args, cfg, origin)
    except ConfigError as err:  # a configuration the command cannot run with
        _print_errors(err, origin)
        return EXIT_CONFIG
    except SchemaTooNew as err:  # a newer jpixd's database: nothing was changed
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as err:  # the database cannot be opened or reached
        print(f"jpixd: {err}", file=sys.stderr)
        return EXIT_FAILED


def _command(args: argparse.Namespace, cfg: Config, origin: str) -> int:
    if args.command == "check-config":
        return _check_config(cfg, origin)
    if args.command == "send-test":
        from jpixd.sendtest import send_test

        logs.configure("warning", cfg.logging.format, stream=sys.stderr)
        return asyncio.run(send_test(cfg, args.to))
    if args.command == "migrate":
        logs.configure(cfg.logging.level, cfg.logging.format)
        return asyncio.run(_migrate_plan(cfg) if args.dry_run else _migrate(cfg))
    if args.command == "migrate-to":
        from jpixd.migratecmd import migrate_to
        from jpixd.statelock import StateBusy

        logs.configure("warning", cfg.logging.format, stream=sys.stderr)
        try:
            return asyncio.run(migrate_to(cfg, args.url, password=args.password,
                                          confirmed=args.yes))
        except StateBusy as err:
            print(f"jpixd: {err}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "run":
        return _run(cfg, args.baseline, args.config, shadow=args.shadow)
    if args.command in ("backup", "restore"):
        logs.configure("warning", cfg.logging.format, stream=sys.stderr)
        return _backup_or_restore(args, cfg)
    if args.command in ("shadow", "cutover"):
        from jpixd.shadowcmd import cutover, report

        logs.configure("warning", cfg.logging.format, stream=sys.stderr)
        if args.command == "cutover":
            return asyncio.run(cutover(cfg, confirmed=args.yes, since=args.since))
        return asyncio.run(report(cfg, notice=args.notice, since=args.since, full=args.full))
    if args.command == "subscribers":
        logs.configure(cfg.logging.level, cfg.logging.format, stream=sys.stderr)
        if args.action == "import":
            return _import(cfg, args.file, args.dry_run, args.reactivate)
        if args.action == "sync":
            from jpixd.synccmd import run_sync

            return run_sync(cfg, args.file, dry_run=args.dry_run,
                            allow_removals=args.allow_removals)
        return _export(cfg, args.output, args.changed_since)
    structlog.get_logger().error("unknown command", command=args.command)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
