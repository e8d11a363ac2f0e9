#!/bin/sh
# Idempotent: installs the Debian packages ember's tests need, only when missing.
# Today: redis-server (the storage tests start their own on a free port) and iproute2 (`ip`, for
# the multi-host test bed of network namespaces, tests/bed/netbed.py).
set -e
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"  # tests/integration/test_metrics.py
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
