# jpixd — `make run` runs the daemon on its embedded default; `make test` runs everything
# that proves it works (lint, types, tests). Both set up .venv from nothing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint typecheck pytest tools bench clean install test-future

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/jpixd run

lint: $(STAMP)
	$(BIN)/ruff check jpixd tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# System tools some tests use (systemd-analyze, promtool, chromium and chromedriver);
# installed when missing and possible, otherwise those tests say they are skipped and why.
tools:
	@scripts/install-test-tools.sh

pytest: $(STAMP)
	$(BIN)/pytest -q

test: tools lint typecheck pytest

# The whole suite with the wall clock four years ahead (libfaketime, Debian's `faketime`):
# no test may depend on today's date. The deploy-hook tests are left out: they build
# wheels from the package index, whose TLS certificates have expired by then.
test-future: $(STAMP)
	@command -v faketime >/dev/null 2>&1 || apt-get install -y -qq faketime >/dev/null
	FAKETIME="+1500d" LD_PRELOAD="$$(dpkg -L libfaketime | grep '/libfaketime.so.1$$')" \
	  $(BIN)/pytest -q -p no:cacheprovider \
	  --ignore tests/test_deploy_hooks.py

# Speed figures (not pass/fail): see the README's table.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis var
