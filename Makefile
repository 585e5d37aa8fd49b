# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: run run-hosted test test-fast lint bench clean

$(BIN)/streamlit: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(BIN)/streamlit requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: $(BIN)/streamlit
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev
	$(BIN)/python -m pytest

test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not browser"

# The classroom load test and the memory soak at full size (20 sessions at once, 50 in a row); `make test`
# runs them reduced. See docs/reliability.md.
test-load: $(VENV)/.dev
	LOAD_TEST_SIZE=full $(BIN)/python -m pytest tests/load

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy resnet_core

bench: $(VENV)/.dev
	$(BIN)/python bench/bench_analysis.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

run-hosted: $(BIN)/streamlit
	PYTHON=$(BIN)/python deploy/serve $(PORT) $(ADDRESS)
