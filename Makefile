# hbdns: `make run` starts the whole stack, `make test` runs the tests. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_BENCH_PACKAGES := dnsperf pdns-backend-bind
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all venv sysdeps bench-sysdeps test lint run bench clean

all: test

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e ./client
	@touch $(STAMP)

venv: $(STAMP)

# Install Debian's packages when a binary is missing: apt only runs on a machine that lacks them.
sysdeps:
	@missing=""; \
	command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server redis-tools"; \
	command -v redis-sentinel >/dev/null || [ -x /usr/bin/redis-sentinel ] || missing="$$missing redis-sentinel"; \
	command -v pdns_server >/dev/null || [ -x /usr/sbin/pdns_server ] || missing="$$missing pdns-server"; \
	ls /usr/lib/*/pdns/libremotebackend.so >/dev/null 2>&1 || missing="$$missing pdns-backend-remote"; \
	command -v ddclient >/dev/null || [ -x /usr/bin/ddclient ] || [ -x /usr/sbin/ddclient ] || missing="$$missing ddclient"; \
	command -v inadyn >/dev/null || [ -x /usr/sbin/inadyn ] || missing="$$missing inadyn"; \
	command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$$missing iproute2"; \
	command -v dig >/dev/null || missing="$$missing dnsutils"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The benchmarks also need dnsperf and pdns' bind backend (the same-run reference).
bench-sysdeps: sysdeps
	@{ command -v dnsperf >/dev/null && ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1; } || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_BENCH_PACKAGES) >/dev/null; }

test: venv sysdeps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy hbdns pdns_backend heartbeat_listener update_api notifier sweeper admin client/hbdns_client tools

run: venv sysdeps
	$(BIN)/python -m tools.devstack

bench: venv bench-sysdeps
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
