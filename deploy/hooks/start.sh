#!/bin/sh
# ApplicationStart: start the release `current` points at.
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
log "starting $SERVICE"
"$SYSTEMCTL" start "$SERVICE"
