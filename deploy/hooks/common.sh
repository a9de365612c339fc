# shellcheck shell=sh
# shellcheck disable=SC2034  # the hooks that source this file use these
# Settings shared by the CodeDeploy hooks. Every one can be overridden from the
# environment, which is how the tests run the hooks for real under a temporary prefix
# with a stand-in for systemctl that fails as systemd does.
# The backups hold every subscriber's address: nothing a hook writes is world-readable
# (a release's code is installed with 022 on purpose: the service user reads it).
umask 027
PREFIX="${JPIXD_PREFIX:-/opt/jpixd}"
BUNDLE="${JPIXD_BUNDLE:-$PREFIX/bundle}"
CONFIG="${JPIXD_CONFIG:-/etc/jpixd/jpixd.toml}"
ETC_DIR="$(dirname "$CONFIG")"
STATE_DIR="${JPIXD_STATE_DIR:-/var/lib/jpixd}"
BACKUP_DIR="${JPIXD_BACKUP_DIR:-$STATE_DIR/backups}"
LOG_DIR="${JPIXD_LOG_DIR:-/var/log/jpixd}"
UNIT_DIR="${JPIXD_UNIT_DIR:-/etc/systemd/system}"
LOGROTATE_DIR="${JPIXD_LOGROTATE_DIR:-/etc/logrotate.d}"
SYSTEMCTL="${JPIXD_SYSTEMCTL:-systemctl}"
AWS="${JPIXD_AWS:-aws}"
SERVICE="${JPIXD_SERVICE:-jpixd}"
READY_URL="${JPIXD_READY_URL:-http://127.0.0.1:8080/readyz}"
READY_TIMEOUT="${JPIXD_READY_TIMEOUT:-60}"
PYTHON="${JPIXD_PYTHON:-python3.11}"
RUN_USER="${JPIXD_USER:-jpixd}"
# Releases kept besides the current and the previous one (each about 100 MB).
KEEP_RELEASES="${JPIXD_KEEP_RELEASES:-3}"
# CodeDeploy names each deployment; by hand, the time will do.
RELEASE_ID="${DEPLOYMENT_ID:-$(date -u +%Y%m%dT%H%M%S)}"

log() {
    echo "jpixd-deploy: $*" >&2
}

# Run a command as the service user when we are root (files it makes stay its own).
as_service_user() {
    if [ "$(id -u)" = 0 ] && id "$RUN_USER" >/dev/null 2>&1; then
        runuser -u "$RUN_USER" -- "$@"
    else
        "$@"
    fi
}

# The database file the configuration names (the release's own jpixd reads it).
database_path() {
    "$1/bin/python" - "$CONFIG" <<'PY'
import sys
from pathlib import Path
from jpixd.cli import load_config
print(load_config(Path(sys.argv[1])).database_path)
PY
}

# "postgresql" when the configuration names a shared database (several hosts), else
# "sqlite" (the release's own jpixd reads it).
database_kind() {
    "$1/bin/python" - "$CONFIG" <<'PY'
import sys
from pathlib import Path
from jpixd.cli import load_config
print("postgresql" if load_config(Path(sys.argv[1])).postgres else "sqlite")
PY
}

# A value the stack wrote for this host (UserData: /etc/jpixd/stack.env), or nothing.
stack_value() {
    sed -n "s/^$1=//p" "$ETC_DIR/stack.env" 2>/dev/null | tail -n 1
}

# Several hosts: a snapshot of the shared database (the stack's RDS instance) before
# release $1 migrates it, waited for; its name in $1/pre-migrate.snapshot. Never restored
# by a hook: the other hosts have written since (README: Several hosts, rolling back).
snapshot_database() {
    instance="$(stack_value JPIXD_DB_INSTANCE)"
    if [ -z "$instance" ]; then
        log "WARNING: no JPIXD_DB_INSTANCE in $ETC_DIR/stack.env: migrating the shared" \
            "database without a snapshot (take one by hand before a deployment that migrates)"
        return 0
    fi
    region="$(stack_value JPIXD_REGION)"
    name="jpixd-pre-$(echo "$RELEASE_ID" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-' | tr -s '-' \
            | sed 's/-$//')"
    # A retried hook finds the snapshot it asked for already there.
    if ! "$AWS" rds describe-db-snapshots --region "$region" --db-snapshot-identifier "$name" \
            >/dev/null 2>&1; then
        "$AWS" rds create-db-snapshot --region "$region" --db-instance-identifier "$instance" \
            --db-snapshot-identifier "$name" >/dev/null
    fi
    log "snapshot $name of $instance requested; waiting until it is available"
    "$AWS" rds wait db-snapshot-available --region "$region" --db-snapshot-identifier "$name"
    echo "$name" >"$1/pre-migrate.snapshot"
    log "snapshot $name is available"
}

# What a database holds, as one digest of every row of every table: equal before and
# after means nothing was written in between (a copy's bytes would differ anyway).
fingerprint() {
    "$1/bin/python" - "$2" <<'PY'
import hashlib, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
digest = hashlib.sha256()
for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY name"):
    digest.update(table.encode())
    for row in db.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
        digest.update(repr(row).encode())
print(digest.hexdigest())
PY
}

# Point `current` at a release (atomically).
switch_to() {
    ln -sfn "$1" "$PREFIX/current.tmp"
    mv -T "$PREFIX/current.tmp" "$PREFIX/current"
}

# Give release $1 a database it can open, after release $2 migrated it. Nothing to do
# when $1 runs on it as it is (its newer migrations only added: see jpixd/store/migrate.py);
# otherwise $2's pre-migration backup goes back, and whatever $2 wrote after its
# migration is kept in a copy and said aloud, never dropped in silence.
database_for() {
    good="$1"
    failed="$2"
    if [ -s "$failed/pre-migrate.snapshot" ]; then
        # The shared database: the other hosts have written to it since, so it is never
        # put back by a hook; an older release runs on it when the migration only added.
        if as_service_user "$good/bin/jpixd" migrate --config "$CONFIG" >/dev/null 2>&1; then
            log "the shared database stays as $(basename "$failed") left it: $(basename "$good") runs on it"
            return 0
        fi
        log "ROLLBACK NEEDS THE DATABASE: $(basename "$good") cannot run on the shared database" \
            "$(basename "$failed") migrated; its snapshot before the migration is" \
            "$(cat "$failed/pre-migrate.snapshot") (README: Several hosts, rolling back)"
        return 1
    fi
    if [ ! -s "$failed/pre-migrate" ]; then
        return 0  # it did not migrate (or there was no database yet)
    fi
    if as_service_user "$good/bin/jpixd" migrate --config "$CONFIG" >/dev/null 2>&1; then
        log "the database stays as $(basename "$failed") left it: $(basename "$good") runs on it"
        return 0
    fi
    backup="$(cat "$failed/pre-migrate")"
    db="$(database_path "$good")"
    if [ "$(fingerprint "$good" "$db")" != "$(cat "$failed/post-migrate.fingerprint" 2>/dev/null)" ]; then
        kept="$(as_service_user "$failed/bin/jpixd" backup "$BACKUP_DIR/kept" \
                --label "kept-after-$(basename "$failed" | tr -c 'a-z0-9\n' '-')" \
                --config "$CONFIG" | sed -n 's/^jpixd: backed up to //p')"
        log "WARNING: $(basename "$failed") wrote to the database after its migration; that" \
            "database is kept as $kept and what it wrote is not in the restored one" \
            "(README: Deploying, rolling back)"
    fi
    as_service_user "$good/bin/jpixd" restore "$backup" --config "$CONFIG" >&2
    log "database restored from $backup"
}

# The release that ran before $1, back and running on a database it can open. Returns
# non-zero when there is none, or when it does not become ready either.
rollback() {
    failed="$1"
    "$SYSTEMCTL" stop "$SERVICE" >/dev/null 2>&1 || true
    good=""
    if [ -L "$PREFIX/current" ] && [ "$(readlink "$PREFIX/current")" != "$failed" ]; then
        good="$(readlink "$PREFIX/current")"
    elif [ -L "$PREFIX/previous" ] && [ "$(readlink "$PREFIX/previous")" != "$failed" ]; then
        good="$(readlink "$PREFIX/previous")"
    fi
    if [ -z "$good" ] || [ ! -x "$good/bin/jpixd" ]; then
        log "ROLLBACK IMPOSSIBLE: no earlier release on this host to go back to"
        return 1
    fi
    if ! database_for "$good" "$failed"; then
        log "NOT ROLLED BACK: $(basename "$good") cannot run on the database as it is"
        return 1
    fi
    switch_to "$good"
    if "$SYSTEMCTL" start "$SERVICE" && wait_ready "$good"; then
        log "rolled back to $(basename "$good"), which is ready"
        return 0
    fi
    log "ROLLED BACK to $(basename "$good"), which is NOT ready either"
    return 1
}

# Wait until /readyz answers 200, or give up after READY_TIMEOUT seconds.
wait_ready() {
    "$1/bin/python" - "$READY_URL" "$READY_TIMEOUT" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)  # polling a peer that has no event to wait on
sys.exit(1)
PY
}
