#!/usr/bin/env bash
# Install what bench/load.py needs beyond the Python environment: wrk (Debian package).
# PostgreSQL and Redis are expected to be running already (see bench/README.md).
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    echo "wrk is installed: $(command -v wrk)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
if ! apt-cache show wrk >/dev/null 2>&1; then
    $SUDO apt-get update
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
echo "wrk is installed: $(command -v wrk)"
