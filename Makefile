# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bootstrap demo test test-all lint bench clean

bootstrap:
	@VENV=$(VENV) scripts/bootstrap.sh

demo: bootstrap
	$(BIN)/vla demo

test: bootstrap
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: bootstrap
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(BIN)/ruff check .

bench: bootstrap
	$(BIN)/python benchmarks/expert_success.py
	$(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info
