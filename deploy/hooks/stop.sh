#!/bin/sh
# ApplicationStop: stop jpixd with a drain. systemd sends SIGTERM; jpixd finishes the
# mail in flight (shutdown_timeout) and exits; systemd waits for that (TimeoutStopSec).
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
if "$SYSTEMCTL" is-active --quiet "$SERVICE"; then
    log "stopping $SERVICE (drain)"
    "$SYSTEMCTL" stop "$SERVICE"
fi
if "$SYSTEMCTL" is-active --quiet "$SERVICE"; then
    log "$SERVICE is still running after stop"
    exit 1
fi
log "$SERVICE is stopped"
