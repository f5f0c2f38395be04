# pktlab: every target that needs the tools bootstraps them first (quick when already done).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo bench vm test-vm clean

install:
	@scripts/bootstrap.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m testbed.demo

bench: install
	$(PY) -m bench

# VMs: libvirt, QEMU and pktlab's Vagrant box (built from Debian packages; minutes the first time, then cached)
vm: install
	@scripts/bootstrap.sh --vm
	@scripts/build-box.sh

# the slow VM tests: a VM booted from the box, a two-VM mesh (minutes under software emulation)
test-vm: vm
	$(PY) -m pytest -m slow tests/integration/test_backend_vagrant.py -s

clean:
	rm -rf $(VENV) build *.egg-info
