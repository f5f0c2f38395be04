#!/usr/bin/env bash
# Installs what pktlab needs on a fresh Debian machine: system packages, then a .venv with the project.
# Idempotent and quick when already done: each step checks before it acts.
#   scripts/bootstrap.sh --vm   also what VMs need (`make vm`): libvirt, QEMU, debootstrap for scripts/build-box.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="mininet iproute2 iputils-ping iperf3 tcpdump procps psmisc ethtool graphviz yggdrasil libsodium-dev"
# the SSH-hosts backend's CI lab (testbed/backends/ssh_lab.py): sshd in namespaces, reached through socat; the hosts
# run the agent with Debian's Python and these libraries, as a Debian host of a real lab would
APT_PACKAGES="$APT_PACKAGES openssh-server socat sudo python3-nacl python3-pyroute2 python3-networkx python3-scipy"
# Vagrant and its libvirt provider, enough for `vagrant validate` of vagrant/Vagrantfile
APT_PACKAGES="$APT_PACKAGES vagrant vagrant-libvirt"
# the market fault test's clock skew (tests/integration/test_market_faults_mesh.py): a service's clock set off
APT_PACKAGES="$APT_PACKAGES libfaketime"
# the live view's browser test (tests/integration/test_ui_browser.py): headless chromium driven by selenium
APT_PACKAGES="$APT_PACKAGES chromium chromium-driver"
# running VMs (the slow-marked tests, bench.backends): only with --vm
VM_PACKAGES="libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base debootstrap"
if [ "${1:-}" = "--vm" ]; then APT_PACKAGES="$APT_PACKAGES $VM_PACKAGES"; fi
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

# the lab's users other than root: one with passwordless sudo, one without (`*`: no password, yet not locked, so
# sshd lets the key in); nothing else on this machine lets them log in
for u in pktlab-ops pktlab-nosudo; do
    id -u "$u" >/dev/null 2>&1 || { useradd -m -s /bin/bash "$u" && usermod -p '*' "$u"; }
done
if [ ! -f /etc/sudoers.d/pktlab-ops ]; then
    echo "pktlab-ops ALL=(ALL) NOPASSWD: ALL" > /etc/sudoers.d/pktlab-ops
    chmod 440 /etc/sudoers.d/pktlab-ops
fi

stamp=.venv/.pktlab-installed
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing pktlab into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev,remote]'
    touch "$stamp"
fi
