# hbdns: `make run` starts the whole stack, `make test` runs the tests. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_BENCH_PACKAGES := dnsperf
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
# Postfix is preseeded to "No configuration": no /etc/postfix/main.cf is written and nothing is
# started (the mail tests run instances of their own from their own config dirs, in a namespace).
# pdns' bind backend serves the static zone of the phase-1 mail scenario; pdns-recursor is the
# caching resolver of the phase-2 one (it starts nothing either: the scenario runs its own).
# chromium and chromium-driver are for the status page's browser test (tests/e2e/test_admin_surfaces.py).
# pebble (ACME test server), lego (ACME client) and pdns-recursor (a caching resolver) are for the
# DNS-01 and resolver tests (tests/e2e/test_acme.py, tests/e2e/test_resolver.py); openssl makes
# pebble's certificate. Installing pdns-recursor starts nothing here (no init system).
# prometheus brings promtool, which checks and tests deploy/prometheus/ (tests/unit/test_prometheus.py);
# installing it starts no Prometheus here either.
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
	ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1 || missing="$$missing pdns-backend-bind"; \
	[ -x /usr/sbin/postfix ] || missing="$$missing postfix"; \
	[ -x /usr/sbin/pdns_recursor ] || missing="$$missing pdns-recursor"; \
	command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || [ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	command -v pebble >/dev/null || [ -x /usr/bin/pebble ] || missing="$$missing pebble"; \
	command -v lego >/dev/null || [ -x /usr/bin/lego ] || missing="$$missing lego"; \
	[ -x /usr/sbin/pdns_recursor ] || missing="$$missing pdns-recursor"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v promtool >/dev/null || [ -x /usr/bin/promtool ] || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The benchmarks also need dnsperf and pdns' bind backend (the same-run reference).
bench-sysdeps: sysdeps
	@{ command -v dnsperf >/dev/null && ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1; } || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_BENCH_PACKAGES) >/dev/null; }

# The few tests marked long_wait spend minutes waiting on real timers (a 60 s Redis outage, a 90 s
# boot without network, the mail path's queues) at little CPU: they run in a second pytest process
# beside the rest, which keeps the whole run inside its time budget. Both must pass (exit 5: that
# process selected no test).
test: venv sysdeps
	@mkdir -p var
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m long_wait $(PYTEST_ARGS) >var/test-long-wait.log 2>&1 & bg=$$!; \
	$(BIN)/python -m pytest -q -m "not long_wait" $(PYTEST_ARGS); rc=$$?; \
	wait $$bg; bgrc=$$?; echo "== long_wait tests (second process, var/test-long-wait.log):"; \
	cat var/test-long-wait.log; [ $$bgrc -eq 5 ] && bgrc=0; [ $$rc -eq 0 ] && [ $$bgrc -eq 0 ]

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy hbdns pdns_backend heartbeat_listener update_api notifier sweeper admin neutral_host backup_mx tools
	$(BIN)/mypy --config-file client/pyproject.toml client/hbdns_client client/tests
	$(BIN)/vermin --target=3.9- --no-tips --violations --quiet client/hbdns_client

run: venv sysdeps
	$(BIN)/python -m tools.devstack

bench: venv bench-sysdeps
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
