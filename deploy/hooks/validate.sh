#!/bin/sh
# ValidateService: the new release must answer /readyz within READY_TIMEOUT. If it does
# not, the release that ran before is put back, running, on a database it can open
# (common.sh: rollback), and the deployment fails so that it shows.
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
CURRENT="$(readlink "$PREFIX/current")"
if wait_ready "$CURRENT"; then
    log "$SERVICE is ready on $(basename "$CURRENT")"
    exit 0
fi
log "$SERVICE did not become ready within ${READY_TIMEOUT}s: rolling back"
if rollback "$CURRENT"; then
    log "DEPLOYMENT FAILED: $(basename "$CURRENT") was not ready; the previous release runs"
else
    log "DEPLOYMENT FAILED: $(basename "$CURRENT") was not ready, and the rollback did not make jpixd ready"
fi
exit 1
