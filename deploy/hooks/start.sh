#!/bin/sh
# ApplicationStart: start the release `current` points at. systemd (Type=notify) fails
# the start when jpixd exits before it is ready, or is not ready within TimeoutStartSec:
# then the release that ran before is put back, running, and the deployment fails here
# (CodeDeploy skips ValidateService after a failed hook, so this one must do it).
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
CURRENT="$(readlink "$PREFIX/current")"
log "starting $SERVICE on $(basename "$CURRENT")"
if "$SYSTEMCTL" start "$SERVICE"; then
    exit 0
fi
log "$SERVICE did not start on $(basename "$CURRENT"): rolling back"
if rollback "$CURRENT"; then
    log "DEPLOYMENT FAILED: $(basename "$CURRENT") did not start; the previous release runs"
else
    log "DEPLOYMENT FAILED: $(basename "$CURRENT") did not start, and the rollback did not make jpixd ready"
fi
exit 1
