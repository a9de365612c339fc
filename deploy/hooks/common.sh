# shellcheck shell=sh
# shellcheck disable=SC2034  # the hooks that source this file use these
# Settings shared by the CodeDeploy hooks. Every one can be overridden from the
# environment, which is how the tests run the hooks for real under a temporary prefix
# with a stand-in for systemctl.
# The pre-migration backup holds every subscriber's address: nothing a hook writes is
# world-readable.
umask 027
PREFIX="${JPIXD_PREFIX:-/opt/jpixd}"
BUNDLE="${JPIXD_BUNDLE:-$PREFIX/bundle}"
CONFIG="${JPIXD_CONFIG:-/etc/jpixd/jpixd.toml}"
SYSTEMCTL="${JPIXD_SYSTEMCTL:-systemctl}"
SERVICE="${JPIXD_SERVICE:-jpixd}"
READY_URL="${JPIXD_READY_URL:-http://127.0.0.1:8080/readyz}"
READY_TIMEOUT="${JPIXD_READY_TIMEOUT:-120}"
PYTHON="${JPIXD_PYTHON:-python3.11}"
RUN_USER="${JPIXD_USER:-jpixd}"
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

# The schema version of a database file (0 when it has none).
schema_version() {
    "$1/bin/python" - "$2" <<'PY'
import sqlite3, sys
try:
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    print(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
except sqlite3.Error:
    print(0)
PY
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
