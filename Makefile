# ccbridge: `make test` installs what it needs and runs the whole suite (real Asterisk
# included); `make run` brings up the three-site lab with the bridge and demo calls.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/lab.yaml
SYSTEM_PACKAGES := debootstrap sip-tester prometheus postgresql haproxy systemd openssl iproute2 chromium dnsmasq-base kamailio gcc python3-dev

.PHONY: test checks lab-root unit integration lint typecheck run down lab status bench bench-quick deps system-deps venv clean

# The lab's root (debootstrap, about 45 s on a fresh clone) builds with the system Python
# (ccbridge/lab/rootfs.py needs only the standard library) while the venv is made and the
# code linted and type-checked: the two took 100 s one after the other in CI.
# The unit and store tests (no lab, ~6.5 min on one core) run on two workers
# (pytest-xdist; each worker makes its own PostgreSQL cluster on a free port); the lab's
# tests hold the lab lock and run one at a time after them.
UNIT_TESTS := -n 2 tests/unit tests/store
test: system-deps
	$(MAKE) --no-print-directory -j2 lab-root checks
	$(BIN)/pytest $(UNIT_TESTS)
	$(BIN)/pytest tests/integration

checks: lint typecheck

lab-root: system-deps
	$(PYTHON) -m ccbridge.lab.rootfs

unit: venv
	$(BIN)/pytest $(UNIT_TESTS)

integration: deps
	$(BIN)/pytest tests/integration

lint: venv
	$(BIN)/ruff check ccbridge tests
	$(BIN)/ruff format --check ccbridge tests

typecheck: venv
	$(BIN)/mypy

run: deps
	$(BIN)/ccbridge lab demo --config $(CONFIG)

down:
	@if [ -x $(BIN)/ccbridge ]; then $(BIN)/ccbridge lab down --config $(CONFIG); fi

lab: deps
	$(BIN)/ccbridge lab up --config $(CONFIG)

status: venv
	$(BIN)/ccbridge lab status --config $(CONFIG)

# Benchmarks (BENCHMARKS.md): full = 30-minute memory and fault soaks (BENCH_SOAK_MINUTES);
# bench-quick = the same benches in about 15 minutes. Both wait for the lab's lock.
bench: deps
	$(BIN)/python -m tests.bench.run_all

bench-quick: deps
	$(BIN)/python -m tests.bench.run_all --quick

deps: venv system-deps

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py ccbridge/ami/_fastparse.c ccbridge/agi/_closer.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian packages: debootstrap builds the lab's Asterisk root, sip-tester is SIPp,
# prometheus is the real server the metrics tests scrape with, postgresql the real server
# the store tests run on (a throwaway cluster per test session, tests/store/pg.py), haproxy
# the AGI guard beside each lab site (bridge.agi_guard), systemd's systemd-analyze checks
# the unit in deploy/; openssl makes the lab's TLS certificates (and the stand-in keys of
# `render --verify`); iproute2's `ip` brings up the loopback of verify's scratch Asterisk
# in its own network namespace; kamailio is the SIP edge the lab can put in front of the
# sites (`edge:`; `kamailio -c` checks the rendered kamailio.cfg in the unit tests); gcc
# builds the ceiling bench's C load generator (tests/bench/agi_gen.c, driven by a unit test)
# and, with python3-dev's headers, the AMI parser's C step (ccbridge/ami/_fastparse.c) and
# the FastAGI server's socket closer (ccbridge/agi/_closer.c).
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

clean: down
	rm -rf $(VENV) .lab .mypy_cache .ruff_cache .pytest_cache
