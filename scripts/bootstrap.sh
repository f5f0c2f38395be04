#!/usr/bin/env bash
# Installs what pktlab needs on a fresh Debian machine: system packages, then a .venv with the project.
# Idempotent and quick when already done: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="mininet iproute2 iputils-ping iperf3 tcpdump procps psmisc ethtool graphviz yggdrasil libsodium-dev"
# the live view's browser test (tests/integration/test_ui_browser.py): headless chromium driven by selenium
APT_PACKAGES="$APT_PACKAGES chromium chromium-driver"
PY=${PYTHON:-python3}

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "bootstrap: installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # mininet without recommends: mnexec, without Open vSwitch (this kernel cannot run it)
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

stamp=.venv/.pktlab-installed
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing pktlab into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi
