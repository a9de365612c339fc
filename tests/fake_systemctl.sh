#!/bin/sh
# systemctl for the deploy-hook tests: tests/fake_systemd.py, which fails as systemd
# does (Type=notify, User=, StateDirectory=), run by the tests' own Python.
exec "${JPIXD_TEST_PYTHON:-python3}" "$(dirname "$0")/fake_systemd.py" "$@"
