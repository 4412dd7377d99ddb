# relabel: `make demo` runs the whole pipeline on generated data; `make test` runs the tests.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DATA ?= demo-data

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DATA)/noisy_labels.csv: | $(STAMP)
	$(BIN)/relabel demo-data $(DEMO_DATA) --overwrite

demo: $(STAMP) $(DEMO_DATA)/noisy_labels.csv
	$(BIN)/relabel ingest $(DEMO_DATA)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_DATA) .relabel-cache runs mlruns mlflow.db .pytest_cache
