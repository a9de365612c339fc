#!/bin/sh
# AfterInstall: the bundle as a new release in its own venv beside the running one,
# installed offline from the bundle's wheelhouse; its config checked; the database
# backed up and migrated; then `current` switched to it (the old one kept as `previous`
# for validate.sh's rollback).
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
NEW="$PREFIX/releases/$RELEASE_ID"
log "installing release $RELEASE_ID into $NEW"
rm -rf "$NEW"
mkdir -p "$PREFIX/releases"
"$PYTHON" -m venv "$NEW"
"$NEW/bin/python" -m pip install --quiet --no-index --find-links "$BUNDLE/wheelhouse" jpixd
as_service_user "$NEW/bin/jpixd" check-config --config "$CONFIG"

DB="$(database_path "$NEW")"
if [ -f "$DB" ]; then
    # jpixd is stopped (ApplicationStop): a consistent copy, WAL included.
    "$NEW/bin/python" - "$DB" "$NEW/pre-migrate.sqlite3" <<'PY'
import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
PY
    log "database backed up to $NEW/pre-migrate.sqlite3"
fi
as_service_user "$NEW/bin/jpixd" migrate --config "$CONFIG"

if [ -L "$PREFIX/current" ]; then
    ln -sfn "$(readlink "$PREFIX/current")" "$PREFIX/previous.tmp"
    mv -T "$PREFIX/previous.tmp" "$PREFIX/previous"
fi
ln -sfn "$NEW" "$PREFIX/current.tmp"
mv -T "$PREFIX/current.tmp" "$PREFIX/current"
log "current is now $RELEASE_ID"
