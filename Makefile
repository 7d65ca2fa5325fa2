# loadgen developer commands. Each target sets up what it needs first.
#   make run    set up, then run the quickstart load test against the built-in endpoint
#   make test   set up (including the real dispatch-py SDK venvs), lint, type-check and run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup sdk browser run test lint proto bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

sdk:
	bash tests/interop/setup_sdk_venv.sh
	bash tests/interop/setup_sdk08_venv.sh

# Debian's Chromium, for the web UI test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| { echo "make browser: install Chromium (Debian package 'chromium') as root" >&2; exit 1; }

run: setup
	$(BIN)/loadgen run

lint: setup
	$(BIN)/ruff check loadgen tests scenarios
	$(BIN)/mypy

test: setup sdk browser lint
	$(BIN)/python -m pytest

proto: setup
	$(BIN)/python -m loadgen.pb.generate

clean:
	rm -rf $(VENV) .venv-sdk .venv-sdk08 .pytest_cache .mypy_cache .ruff_cache
