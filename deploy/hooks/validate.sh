#!/bin/sh
# ValidateService: the new release must answer /readyz within READY_TIMEOUT. If it does
# not, roll back by ourselves: stop it, point `current` at the previous release, put the
# database back as it was before the migration (only if this release migrated it: a
# release that did not keeps the mail it recorded), start the previous release, and fail
# the deployment so that it shows.
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
CURRENT="$(readlink "$PREFIX/current")"
if wait_ready "$CURRENT"; then
    log "$SERVICE is ready on $(basename "$CURRENT")"
    exit 0
fi
log "$SERVICE did not become ready within ${READY_TIMEOUT}s: rolling back"
"$SYSTEMCTL" stop "$SERVICE" || true
if [ ! -L "$PREFIX/previous" ]; then
    log "no previous release to roll back to"
    exit 1
fi
PREVIOUS="$(readlink "$PREFIX/previous")"
DB="$(database_path "$PREVIOUS")"
if [ -f "$CURRENT/pre-migrate.sqlite3" ] && [ -f "$DB" ] && \
        [ "$(schema_version "$PREVIOUS" "$DB")" != \
          "$(schema_version "$PREVIOUS" "$CURRENT/pre-migrate.sqlite3")" ]; then
    "$PREVIOUS/bin/python" - "$CURRENT/pre-migrate.sqlite3" "$DB" <<'PY'
import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
PY
    log "database restored to its schema before the migration"
fi
ln -sfn "$PREVIOUS" "$PREFIX/current.tmp"
mv -T "$PREFIX/current.tmp" "$PREFIX/current"
"$SYSTEMCTL" start "$SERVICE"
if wait_ready "$PREVIOUS"; then
    log "rolled back to $(basename "$PREVIOUS"), which is ready"
else
    log "rolled back to $(basename "$PREVIOUS"), which is NOT ready either"
fi
exit 1
