#!/bin/sh
# Makes a fresh host ready for jpixd and leaves a ready one as it is: every step is
# idempotent (CodeDeploy retries a hook; every deployment runs this first, from
# install.sh). The service user and its folders, the units (jpixd, the journal shipper,
# the daily backup) and log rotation, the configuration (rendered once from the stack's
# settings in stack.env; never overwritten), the CloudWatch agent's configuration and
# New Relic's Prometheus integration when those agents are installed (UserData installs
# them on EC2).
set -eu
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
DEPLOY="$BUNDLE/deploy"

# The service user: a system account with no shell and no home of its own.
if ! id "$RUN_USER" >/dev/null 2>&1; then
    getent group "$RUN_USER" >/dev/null 2>&1 || groupadd --system "$RUN_USER"
    useradd --system --gid "$RUN_USER" --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$RUN_USER"
    log "created the service user $RUN_USER"
fi

# Folders, with their owners (migrate runs before systemd's StateDirectory= ever has).
install -d -m 0755 "$PREFIX" "$PREFIX/releases"
install -d -m 0750 -o root -g "$RUN_USER" "$ETC_DIR"
install -d -m 0750 -o "$RUN_USER" -g "$RUN_USER" "$STATE_DIR" "$BACKUP_DIR" \
    "$BACKUP_DIR/releases" "$BACKUP_DIR/daily" "$BACKUP_DIR/kept"
install -d -m 0750 -o root -g "$RUN_USER" "$LOG_DIR"

# The units, with this host's paths; systemd reloads only when one changed.
changed=""
for unit in jpixd.service jpixd-journal.service jpixd-backup.service jpixd-backup.timer; do
    sed -e "s#/opt/jpixd#$PREFIX#g" -e "s#/etc/jpixd#$ETC_DIR#g" \
        -e "s#/var/lib/jpixd#$STATE_DIR#g" -e "s#/var/log/jpixd#$LOG_DIR#g" \
        -e "s#^User=jpixd#User=$RUN_USER#" -e "s#^Group=jpixd#Group=$RUN_USER#" \
        "$DEPLOY/systemd/$unit" >"$UNIT_DIR/$unit.new"
    chmod 0644 "$UNIT_DIR/$unit.new"
    if cmp -s "$UNIT_DIR/$unit.new" "$UNIT_DIR/$unit"; then
        rm -f "$UNIT_DIR/$unit.new"
    else
        mv "$UNIT_DIR/$unit.new" "$UNIT_DIR/$unit"
        changed="$changed $unit"
    fi
done
# The shadow weeks (the stack's ShadowMode): the first deployment never mails.
dropin="$UNIT_DIR/jpixd.service.d/shadow.conf"
if grep -qx 'JPIXD_SHADOW=true' "$ETC_DIR/stack.env" 2>/dev/null && [ ! -e "$ETC_DIR/cut-over" ]; then
    install -d -m 0755 "$UNIT_DIR/jpixd.service.d"
    sed -e "s#/opt/jpixd#$PREFIX#g" -e "s#/etc/jpixd#$ETC_DIR#g" \
        "$DEPLOY/systemd/jpixd-shadow.conf" >"$dropin.new"
    if cmp -s "$dropin.new" "$dropin"; then
        rm -f "$dropin.new"
    else
        mv "$dropin.new" "$dropin"
        changed="$changed shadow.conf"
    fi
elif [ -e "$dropin" ]; then
    rm -f "$dropin"
    changed="$changed (shadow.conf removed: cut over)"
fi
if [ -n "$changed" ]; then
    "$SYSTEMCTL" daemon-reload
    log "installed units:$changed"
fi
"$SYSTEMCTL" enable jpixd.service jpixd-journal.service
install -m 0644 "$DEPLOY/logrotate/jpixd" "$LOGROTATE_DIR/jpixd"

# The configuration: rendered once from the stack's settings, then the operator's.
if [ ! -f "$CONFIG" ]; then
    if [ ! -f "$ETC_DIR/stack.env" ]; then
        log "no $CONFIG and no $ETC_DIR/stack.env to render it from (UserData writes it)"
        exit 1
    fi
    JPIXD_STATE_DIR="$STATE_DIR" "$PYTHON" "$DEPLOY/config/render.py" "$BUNDLE/jpixd.toml.example" "$ETC_DIR/stack.env" \
        >"$CONFIG.new"
    chgrp "$RUN_USER" "$CONFIG.new"
    chmod 0640 "$CONFIG.new"
    mv "$CONFIG.new" "$CONFIG"
    log "rendered $CONFIG from $ETC_DIR/stack.env"
fi
# Where the daily copy also goes (one host: the stack's backup bucket, in stack.env).
backup_s3="${JPIXD_BACKUP_S3:-$(stack_value JPIXD_BACKUP_S3)}"
if [ -n "$backup_s3" ] && [ ! -f "$ETC_DIR/backup.env" ]; then
    printf 'JPIXD_BACKUP_S3=%s\n' "$backup_s3" >"$ETC_DIR/backup.env"
fi

# The CloudWatch agent (installed by UserData): ships the journal file, disk figures and
# the few jpixd series CloudWatch alarms on (stalled mail; silence: the dead man's switch).
CWA=/opt/aws/amazon-cloudwatch-agent
if [ -x "$CWA/bin/amazon-cloudwatch-agent-ctl" ]; then
    install -m 0644 "$DEPLOY/cloudwatch/amazon-cloudwatch-agent.json" "$CWA/etc/jpixd.json"
    install -m 0644 "$DEPLOY/cloudwatch/prometheus.yaml" "$CWA/etc/jpixd-prometheus.yaml"
    "$CWA/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s \
        -c "file:$CWA/etc/jpixd.json" >/dev/null
    log "CloudWatch agent configured and running"
fi
# New Relic's infrastructure agent (installed with its licence by UserData): scrape
# /metrics with the host's name on every series.
if [ -d /etc/newrelic-infra/integrations.d ]; then
    sed "s#@HOST@#$(hostname)#g" "$DEPLOY/newrelic/nri-prometheus.yml" \
        >/etc/newrelic-infra/integrations.d/jpixd-prometheus.yml
    "$SYSTEMCTL" restart newrelic-infra >/dev/null 2>&1 || true
    log "New Relic Prometheus integration configured"
fi
"$SYSTEMCTL" start jpixd-journal.service
# The daily `jpixd backup` copies a host's own SQLite database; a shared PostgreSQL is
# backed up by RDS (automated backups, snapshots before migrations) and not per host.
if "$PYTHON" - "$CONFIG" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    url = str(tomllib.load(f).get("database_url") or "")
sys.exit(0 if url.startswith(("postgresql:", "postgres:")) else 1)
PY
then
    "$SYSTEMCTL" disable jpixd-backup.timer >/dev/null 2>&1 || true
    "$SYSTEMCTL" stop jpixd-backup.timer >/dev/null 2>&1 || true
else
    "$SYSTEMCTL" enable jpixd-backup.timer
    "$SYSTEMCTL" start jpixd-backup.timer
fi
