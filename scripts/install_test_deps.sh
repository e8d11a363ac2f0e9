#!/bin/sh
# Idempotent: installs the Debian packages ember's tests need, only when missing.
# Today: redis-server (the storage tests start their own on a free port), iproute2 (`ip`, for
# the multi-host test bed of network namespaces, tests/bed/netbed.py), openssh-server and -client (the
# autoscaler's ssh provider runs against real sshd servers inside the bed's hosts) and chromium (the
# dashboard's browser tests drive Debian's headless Chromium with Playwright:
# tests/integration/test_dashboard_browser.py), prometheus (one metrics test scrapes ember with a real server).
set -e
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"  # tests/integration/test_metrics.py
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
