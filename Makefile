# pktlab: every target that needs the tools bootstraps them first (quick when already done).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo bench clean

install:
	@scripts/bootstrap.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m testbed.demo

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
