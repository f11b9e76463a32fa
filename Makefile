# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bootstrap lerobot-reader demo test test-all lint bench regress clean

bootstrap:
	@VENV=$(VENV) scripts/bootstrap.sh

# LeRobot's own dataset reader in a venv of its own (its huggingface-hub pin clashes with ours): the tests
# read `vla dataset export-lerobot` outputs with it. About 7 min and 6 GB once; LEROBOT_READER=0 skips it.
lerobot-reader:
	@[ "$${LEROBOT_READER:-1}" = 0 ] || scripts/lerobot_reader_env.sh

demo: bootstrap
	$(BIN)/vla demo

test: bootstrap lerobot-reader
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: bootstrap lerobot-reader
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(BIN)/ruff check .

bench: bootstrap
	$(BIN)/python benchmarks/expert_success.py
	$(BIN)/python benchmarks/env_throughput.py

# The bundled configuration (mean of 16 samples, every task, id split) against its committed baseline:
# the same seeds, a paired verdict; exit 1 on a significant regression. One store per revision, so a
# killed run resumes and a new revision starts fresh. REGRESS_FLAGS="--executor ray" shards it with Ray.
REGRESS_BASELINE ?= benchmarks/baselines/bundled_mean16_id.jsonl
REGRESS_STORE ?= runs/regress/$(shell git rev-parse --short HEAD 2>/dev/null || echo tree).jsonl
REGRESS_FLAGS ?=
regress: bootstrap
	$(BIN)/vla eval --policy models/policy --average 16 --task all --variation id --episodes 50 --seed 10000 \
		--store $(REGRESS_STORE) --no-progress $(REGRESS_FLAGS)
	$(BIN)/vla regress --baseline $(REGRESS_BASELINE) --candidate $(REGRESS_STORE) \
		--out $(REGRESS_STORE:.jsonl=.verdict.md)

clean:
	rm -rf $(VENV) runs build *.egg-info
