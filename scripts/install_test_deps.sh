#!/bin/sh
# Idempotent: installs the Debian packages ember's tests need, only when missing.
# Today: redis-server (tests/control/test_storage_backends.py starts its own on a free port).
set -e
if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
