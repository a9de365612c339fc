#!/bin/sh
# Installs the Debian tools that some tests use, when they are missing and we may:
# systemd-analyze (package systemd) to verify the unit file; promtool (package
# prometheus) to check the metrics text and the alert rules; shellcheck for the deploy
# hooks; postgresql (initdb, pg_ctl: the tests start a server of their own); chromium
# and chromedriver (packages chromium, chromium-driver) for the browser tests, driven by
# Selenium (Debian's browser, no download at test time), and a Japanese font for their
# screenshots. Never fails the build: a test that needs a missing tool is skipped with
# the reason.
set -u
need=""
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"
# The deploy-hook tests make each release's venv from the host's Python, as on EC2.
/usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 || need="$need python3.11-venv"
# PostgreSQL's server binaries (initdb, pg_ctl): the tests start their own server.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need="$need postgresql"
fi
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v chromedriver >/dev/null 2>&1 || need="$need chromium-driver"
# A Japanese font, or the browser tests' screenshots show boxes instead of text.
fc-list :lang=ja 2>/dev/null | grep -q . || need="$need fonts-ipafont-gothic"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-tools: missing:$need (not root or no apt-get); their tests will be skipped"
  exit 0
fi
echo "install-test-tools: installing$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
# policy-rc.d 101: packages must not try to start services on a build/CI machine.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
# shellcheck disable=SC2086  # $need is a list of package names: split on purpose
apt-get install -y -qq --no-install-recommends $need >/dev/null 2>&1 \
  || echo "install-test-tools: could not install$need; their tests will be skipped"
rm -f /usr/sbin/policy-rc.d
exit 0
