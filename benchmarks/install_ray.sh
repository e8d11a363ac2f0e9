#!/usr/bin/env bash
# Create benchmarks/.ray-venv with Ray (with its `client` extra, for Ray Client in
# benchmarks/client_vs_ray_client.py) and numpy, for benchmarks/compare_ray.py. Idempotent: does nothing when the pinned version is
# already installed there. Ray is never a dependency of ember itself.
# RAY_EXTRAS=default installs `ray[default]` (Ray's dashboard and its dependencies), which
# benchmarks/footprint.py needs to measure Ray with its dashboard.
#
#   bash benchmarks/install_ray.sh            # uses `python3` to build the venv
#   PYTHON=python3.11 bash benchmarks/install_ray.sh
set -euo pipefail

RAY_VERSION="${RAY_VERSION:-2.60.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RAY_VENV:-$HERE/.ray-venv}"
PYTHON="${PYTHON:-python3}"
RAY_EXTRAS="${RAY_EXTRAS:-}"
EXTRA_CHECK=""
[ -n "$RAY_EXTRAS" ] && EXTRA_CHECK="; import aiohttp_cors, prometheus_client"

if [ -x "$VENV/bin/python" ] &&
   "$VENV/bin/python" -c "import ray, numpy, grpc, sys$EXTRA_CHECK; sys.exit(ray.__version__ != '$RAY_VERSION')" 2>/dev/null; then
    echo "ray $RAY_VERSION already installed in $VENV"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "ray[client${RAY_EXTRAS:+,$RAY_EXTRAS}]==$RAY_VERSION" numpy psutil
"$VENV/bin/python" -c "import ray; print('installed ray', ray.__version__, 'in $VENV')"
