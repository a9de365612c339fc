#!/bin/sh
# `aws` for the deploy-hook tests (JPIXD_AWS): records every call in
# $JPIXD_FAKE_AWS_DIR/calls and keeps each RDS snapshot it was asked for as a file, so that
# describe and wait find it afterwards, as RDS would once the snapshot is available.
set -eu
dir="${JPIXD_FAKE_AWS_DIR:?}"
echo "$*" >>"$dir/calls"
name=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "--db-snapshot-identifier" ]; then
        name="$arg"
    fi
    prev="$arg"
done
case "$1 $2" in
    "rds create-db-snapshot") touch "$dir/snapshot-$name" ;;
    "rds describe-db-snapshots"|"rds wait")
        if [ ! -e "$dir/snapshot-$name" ]; then
            echo "An error occurred (DBSnapshotNotFound): $name not found" >&2
            exit 254
        fi ;;
    *) echo "fake aws: $* is not supported" >&2; exit 2 ;;
esac
