# The two commands of the README: `make demo` and `make test`. Each sets up a
# virtual environment (.venv) with the package and its dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format docs bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m skfewrec demo

test: $(STAMP)
	$(BIN)/ruff check skfewrec tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check skfewrec tests benchmarks
	$(BIN)/ruff format --check skfewrec tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format skfewrec tests benchmarks

docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	cd benchmarks && ../$(BIN)/python fewshot.py --data ../../shared/data/ml-100k
	cd benchmarks && ../$(BIN)/python speed.py

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build .pytest_cache .ruff_cache
