#!/bin/sh
# AfterInstall: the host made ready (bootstrap.sh); the bundle as a new release in its
# own venv beside the running one, installed offline from the bundle's wheelhouse; its
# config checked; the database backed up (`jpixd backup`; a shared PostgreSQL is
# snapshotted in RDS instead, when there is anything to migrate) and migrated; then `current`
# switched to it (the old one kept as `previous` for the rollback) and old releases
# pruned. ApplicationStop has stopped jpixd: if anything here fails, the release that ran
# is put back, running, and the deployment fails.
#
# Idempotent: CodeDeploy may run this hook again with the same deployment id; a release
# already installed is not reinstalled, a database already migrated by it is neither
# backed up nor migrated again, and `previous` never becomes `current`.
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
sh "$(dirname "$0")/bootstrap.sh"
NEW="$PREFIX/releases/$RELEASE_ID"

restore_running() {
    status=$?
    if [ "$status" -ne 0 ]; then
        log "AfterInstall of $RELEASE_ID failed: putting the release that ran back"
        rollback "$NEW" || true
    fi
    exit "$status"
}
trap restore_running EXIT

if [ -f "$NEW/.installed" ]; then
    log "release $RELEASE_ID is installed already (a retried hook)"
else
    log "installing release $RELEASE_ID into $NEW"
    rm -rf "$NEW"
    (
        umask 022  # code, not secrets: the service user reads it
        "$PYTHON" -m venv "$NEW"
        "$NEW/bin/python" -m pip install --quiet --no-index \
            --find-links "$BUNDLE/wheelhouse" jpixd
    )
    touch "$NEW/.installed"
fi
as_service_user "$NEW/bin/jpixd" check-config --config "$CONFIG"

if [ "$(database_kind "$NEW")" = postgresql ]; then
    # Several hosts share the database: the first of them to install this release migrates
    # it (once: the migrations' advisory lock), after a snapshot; the others find it done.
    # OneAtATime keeps the rest serving on the older release meanwhile, which a migration
    # that only adds allows (README: Several hosts).
    if [ ! -f "$NEW/migrated" ]; then
        plan="$(as_service_user "$NEW/bin/jpixd" migrate --dry-run --config "$CONFIG")"
        log "$plan"
        case "$plan" in
            *"at schema version 0:"*) ;;  # a new database: nothing to keep
            *"would apply"*) snapshot_database "$NEW" ;;
        esac
        case "$plan" in
            *"older releases cannot run on"*)
                log "WARNING: the hosts not yet on $RELEASE_ID cannot run on the migrated" \
                    "database; they fail until their turn in this deployment" ;;
        esac
        as_service_user "$NEW/bin/jpixd" migrate --config "$CONFIG"
        touch "$NEW/migrated"
    fi
    DB=""
else
    DB="$(database_path "$NEW")"
fi
if [ -n "$DB" ] && [ ! -f "$NEW/post-migrate.fingerprint" ]; then
    : >"$NEW/pre-migrate"
    if [ -f "$DB" ]; then
        as_service_user "$NEW/bin/jpixd" backup "$BACKUP_DIR/releases" \
            --label "pre-$(echo "$RELEASE_ID" | tr -c 'a-z0-9\n' '-')" --config "$CONFIG" \
            | sed -n 's/^jpixd: backed up to //p' >"$NEW/pre-migrate"
        log "database backed up to $(cat "$NEW/pre-migrate")"
    fi
    if ! as_service_user "$NEW/bin/jpixd" migrate --config "$CONFIG"; then
        # A newer release migrated it and was not rolled back by its own hooks (CodeDeploy
        # redeploying this older revision): its pre-migration copy, if nothing was written
        # since, or loudly otherwise (database_for).
        # shellcheck disable=SC2012  # release names are deployment ids: ls -t orders by time
        last="$(ls -1td "$PREFIX"/releases/*/ 2>/dev/null | sed 's#/$##' | grep -v "^$NEW\$" \
                | while read -r r; do [ -s "$r/pre-migrate" ] && echo "$r" && break; done)"
        [ -n "$last" ] || exit 1
        log "the database is newer than release $RELEASE_ID knows: undoing $(basename "$last")'s migration"
        database_for "$NEW" "$last"
        as_service_user "$NEW/bin/jpixd" migrate --config "$CONFIG"
    fi
    if [ -f "$DB" ]; then
        fingerprint "$NEW" "$DB" >"$NEW/post-migrate.fingerprint"
    else
        : >"$NEW/post-migrate.fingerprint"
    fi
fi

if [ "$(readlink "$PREFIX/current" 2>/dev/null || true)" != "$NEW" ]; then
    if [ -L "$PREFIX/current" ]; then
        ln -sfn "$(readlink "$PREFIX/current")" "$PREFIX/previous.tmp"
        mv -T "$PREFIX/previous.tmp" "$PREFIX/previous"
    fi
    switch_to "$NEW"
fi
log "current is now $RELEASE_ID"

# Releases: the current, the previous and the newest KEEP_RELEASES others stay.
keep="$(readlink "$PREFIX/current") $(readlink "$PREFIX/previous" 2>/dev/null || true)"
# shellcheck disable=SC2012  # release names are deployment ids: ls -t orders by time
ls -1td "$PREFIX"/releases/*/ 2>/dev/null | sed 's#/$##' | tail -n +"$((KEEP_RELEASES + 1))" \
    | while read -r old; do
        case " $keep " in
            *" $old "*) ;;
            *) rm -rf "$old" && log "pruned release $(basename "$old")" ;;
        esac
    done
trap - EXIT
