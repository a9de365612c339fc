#!/bin/sh
# A stand-in for systemctl in the deploy-hook tests (the test machine may have no
# systemd): start, stop (SIGTERM, then wait for the exit, as systemd does) and is-active
# for the one service, running the release `current` points at.
set -eu
PIDFILE="$JPIXD_PREFIX/jpixd.pid"
action="$1"
shift
case "$action" in
    start)
        nohup "$JPIXD_PREFIX/current/bin/jpixd" run --config "$JPIXD_CONFIG" \
            >>"$JPIXD_PREFIX/jpixd.log" 2>&1 &
        echo "$!" >"$PIDFILE"
        ;;
    stop)
        if [ -f "$PIDFILE" ]; then
            pid="$(cat "$PIDFILE")"
            if kill -TERM "$pid" 2>/dev/null; then
                timeout 45 tail --pid="$pid" -f /dev/null
            fi
            rm -f "$PIDFILE"
        fi
        ;;
    is-active)
        [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
        ;;
    *)
        echo "fake systemctl: $action is not supported" >&2
        exit 2
        ;;
esac
