# Two commands: `make run` serves the whole stack, `make test` runs the suite. `make help` lists all.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv missing: installing it"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the Python dependencies

run: $(STAMP) ## Set up and serve everything: http://127.0.0.1:8000, Flower on :5555 (Ctrl-C stops)
	$(BIN)/python ops/local/stack.py run

test: $(STAMP) ## The test suite against real Redis, MariaDB and moto server, then tf-check
	$(BIN)/python ops/local/stack.py test $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ]; then $(MAKE) --no-print-directory tf-check; fi

bench: $(STAMP) ## Measure the purchase path vs its ceiling, the relay, the flash sale, worker, lag, reads and the box office (BENCH_ARGS=...)
	$(BIN)/python ops/bench/bench.py $(BENCH_ARGS)

docs: $(STAMP) ## Regenerate docs/reference.md and the Postman collection from the code
	$(BIN)/python ops/docs/reference.py > docs/reference.md.new && mv docs/reference.md.new docs/reference.md
	$(BIN)/python ops/docs/postman.py > docs/postman.json.new && mv docs/postman.json.new docs/ticketing.postman_collection.json

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove .venv and .run (local data of services started by make run)
	rm -rf $(VENV) .run

.PHONY: help install run test bench docs lint format clean

# --- Static checks of the AWS deployment (ops/terraform, ops/scripts). checkov lives in a venv
# of its own under .run/ (ignored): its pins would clash with the project's.
CHECKOV_VENV := .run/venv-checkov
CHECKOV_VERSION := 3.3.30

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	@mkdir -p .run
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)'
	@touch $@

tf-check: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION) ## checkov on ops/terraform, shellcheck on ops/scripts, terraform fmt
	@command -v shellcheck >/dev/null || [ "$$(id -u)" != 0 ] || { \
	  echo "shellcheck missing: installing it"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck; }
	$(CHECKOV_VENV)/bin/checkov -d ops/terraform --quiet --compact
	@if command -v shellcheck >/dev/null; then shellcheck -x ops/scripts/*.sh && echo "shellcheck: ok"; \
	else echo "shellcheck missing and not root: skipped (install Debian's shellcheck)"; fi
	@if command -v terraform >/dev/null; then \
	  terraform fmt -check -recursive ops/terraform && echo "terraform fmt: ok"; \
	else echo "terraform not installed: format check skipped"; fi

.PHONY: tf-check
