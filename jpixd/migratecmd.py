"""`jpixd migrate-to postgresql://…`: a single host's SQLite database copied whole into
an empty PostgreSQL database, the step from one host to several (README: Several hosts).

Without --yes it checks everything (the daemon stopped, the target reachable, migrated
and empty, the schemas alike) and prints what it would copy; with --yes it copies in one
PostgreSQL transaction, checks each table's count, and marks the SQLite database as
moved, so that a `jpixd run` left on the old host refuses to send what the new one sends.
Exit 2, and nothing changed, when anything is refused."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from jpixd.config import Config, ConfigError, Secret
from jpixd.model import utcnow

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
PASSWORD_ENV = "JPIXD_DATABASE_PASSWORD"


def password_secret(ref: str | None, env: dict[str, str]) -> Secret | None:
    """`--password`: "ssm:/path", "env:VAR" or "file:/path"; by default the variable
    JPIXD_DATABASE_PASSWORD when set (the config's own fallback). Never the value itself
    on the command line, where every user of the host could read it."""
    if ref is None:
        return Secret(f"env:{PASSWORD_ENV}", env[PASSWORD_ENV]) if PASSWORD_ENV in env else None
    if ref.startswith("ssm:/"):
        return Secret(ref)
    if ref.startswith("env:"):
        name = ref[4:]
        if name not in env:
            raise ConfigError([f"--password {ref}: the variable {name} is not set"])
        return Secret(ref, env[name])
    if ref.startswith("file:"):
        path = Path(ref[5:])
        try:
            return Secret(ref, path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError([f"--password {ref}: {exc.strerror or exc}"]) from None
    raise ConfigError([f"--password {ref!r}: give \"ssm:/path\", \"env:VAR\" or "
                       "\"file:/path\" (never the password itself)"])


def target_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        return f"{url!r}: give the target as postgresql://user@host:port/database"
    if parts.password:
        return ("the URL has a password in it, where every user of the host can read it: "
                "give it with --password ssm:/path, env:VAR or file:/path")
    return None


async def migrate_to(cfg: Config, url: str, *, password: str | None, confirmed: bool) -> int:
    import asyncpg

    from jpixd.app import open_migrated, open_store
    from jpixd.secrets import resolve_ssm
    from jpixd.statelock import hold
    from jpixd.store import transfer

    if cfg.postgres:
        print("jpixd: the configured database is PostgreSQL already: migrate-to copies a "
              "single host's SQLite database", file=sys.stderr)
        return EXIT_CONFIG
    why = target_problem(url)
    if why:
        print(f"jpixd: {why}", file=sys.stderr)
        return EXIT_CONFIG
    target_cfg = await resolve_ssm(replace(cfg, database_url=url, database_password=(
        password_secret(password, dict(os.environ)))))
    secret = target_cfg.database_password
    pw = secret.get() if secret is not None else None
    # The daemon stopped for the whole copy: its lock, held here (a running one refuses).
    with hold(cfg.state_dir, utcnow()):
        source = await open_store(cfg, utcnow)
        try:
            mode = await source.mode()
            if mode.get("moved_to"):
                print(f"jpixd: this database was moved to {mode['moved_to']} at "
                      f"{mode.get('moved_at')} already", file=sys.stderr)
                return EXIT_CONFIG
            # The target's schema, this release's (under the migrations' advisory lock).
            target_store, _ = await open_migrated(target_cfg, utcnow)
            await target_store.close()
            try:
                conn = await asyncpg.connect(dsn=url, password=pw, timeout=15)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                print(f"jpixd: cannot connect to {url}: {exc}", file=sys.stderr)
                return EXIT_FAILED
            try:
                with transfer.read_source(cfg.database_path) as lite:
                    tables = await transfer.plan(lite, conn)
                    total = sum(t.rows for t in tables)
                    where = f"{cfg.database_path} → {url}"
                    if not confirmed:
                        for t in tables:
                            print(f"  {t.name}: {t.rows} rows")
                        print(f"jpixd migrate-to: would copy {total} rows in {len(tables)} "
                              f"tables ({where}); nothing written. Run again with --yes, "
                              "the daemon stopped.")
                        return EXIT_OK
                    await transfer.copy(lite, conn, tables, lambda t: print(
                        f"  {t.name}: {t.rows} rows copied", flush=True))
            finally:
                await conn.close()
            await source.mark_moved(url, utcnow())
        except transfer.TransferRefused as exc:
            print(f"jpixd: nothing copied: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        finally:
            await source.close()
    print(f"jpixd migrate-to: copied {total} rows in {len(tables)} tables ({where}). "
          "This database is marked as moved: `jpixd run` refuses it from now on. Next: set "
          f"database_url = \"{url}\" and database_password in every host's config, "
          "then `jpixd migrate` and start them (README: Several hosts).")
    return EXIT_OK

