# Crow's Nest. `make run` serves locally; `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-faults fuzz lint unit bench system-deps migrate check-config clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

## The real services the tests use: Debian's docker-registry, skopeo, PostgreSQL, wrk.
system-deps:
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

migrate: $(VENV)/.installed
	$(BIN)/crowsnest migrate

## Without a config of your own ($$CROWSNEST_CONFIG or ./crowsnest.toml) nothing authenticates
## the admission and Falco endpoints, which serve refuses; for this local dry run they are served
## open on loopback instead ([section] allow_unauthenticated), and the start-up log warns so.
run: $(VENV)/.installed migrate
	@if [ -z "$$CROWSNEST_CONFIG" ] && [ ! -e crowsnest.toml ]; then \
		export CROWSNEST_SERVER__HOST=127.0.0.1 CROWSNEST_ADMISSION__ALLOW_UNAUTHENTICATED=true \
			CROWSNEST_FALCO__ALLOW_UNAUTHENTICATED=true; \
	fi; \
	exec $(BIN)/crowsnest serve

check-config: $(VENV)/.installed
	$(BIN)/crowsnest check-config

lint: $(VENV)/.installed-test
	$(BIN)/ruff check bot handlers tests bench migrations/env.py
	$(BIN)/mypy
	$(BIN)/lint-imports

test: system-deps $(VENV)/.installed-test lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-faults: system-deps $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -m faults

## Every target 100,000 runs ($(FUZZ_RUNS)), each stopped at the first crash, at an input that
## runs over 10 s (a hang) or at 1 GiB RSS (unbounded memory).
FUZZ_RUNS ?= 100000
FUZZ_LIMITS := -timeout=10 -rss_limit_mb=1024 -print_final_stats=1
FUZZ_PARSERS := distribution dockerhub ghcr harbor quay ecr artifact-registry falco admission
fuzz: $(VENV)/.installed-test
	$(BIN)/pip install -q atheris
	@for target in $(FUZZ_PARSERS); do \
		echo "== fuzz $$target"; \
		CROWSNEST_FUZZ_ONLY=$$target $(BIN)/python tests/fuzz_parsers.py -runs=$(FUZZ_RUNS) \
			$(FUZZ_LIMITS) || exit 1; \
	done
	@echo "== fuzz layers"
	$(BIN)/python tests/fuzz_layers.py -runs=$(FUZZ_RUNS) $(FUZZ_LIMITS)

bench: system-deps $(VENV)/.installed-test
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/digest.py
	$(BIN)/python bench/vulns.py
	$(BIN)/python bench/admission.py

clean:
	rm -rf $(VENV) crowsnest.db crowsnest.db-wal crowsnest.db-shm
