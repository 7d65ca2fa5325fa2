# loadgen developer commands. Each target sets up what it needs first.
#   make run    set up, then run the quickstart load test against the built-in endpoint
#   make test   set up (including the real dispatch-py SDK venvs), lint, type-check, check the layers and run the tests
#   make proto  regenerate loadgen/pb from proto/ (with the generator's own venv, .venv-protoc)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup sdk protoc browser run test lint proto bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The real SDKs: each in a venv of its own (interop), and each beside loadgen in one venv (drop-in).
sdk:
	bash tests/interop/setup_sdk_venv.sh
	bash tests/interop/setup_sdk08_venv.sh
	bash tests/dropin/setup_dropin_venvs.sh

# grpcio-tools 1.62.3 for loadgen/pb (its generated code runs on protobuf 4.25.1 to 7.x).
protoc:
	bash proto/setup_protoc_venv.sh

# Debian's Chromium, for the web UI test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| { echo "make browser: install Chromium (Debian package 'chromium') as root" >&2; exit 1; }

run: setup
	$(BIN)/loadgen run

lint: setup
	$(BIN)/ruff check loadgen tests scenarios
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup sdk protoc browser lint
	$(BIN)/python -m pytest

proto: protoc
	.venv-protoc/bin/python loadgen/pb/generate.py

clean:
	rm -rf $(VENV) .venv-sdk .venv-sdk08 .venv-dropin .venv-dropin08 .venv-protoc .cache .pytest_cache .mypy_cache .ruff_cache
