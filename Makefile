PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: run test lint bench compat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/conveyor up

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python -m bench

# Celery's own integration suite, plain and with conveyor.install(app), on Redis and RabbitMQ:
# the passed tests must be the same (tests/compat/run.py, tests/compat/exclusions.txt).
compat: $(STAMP)
	$(BIN)/python tests/compat/run.py

clean:
	rm -rf $(VENV) .conveyor .pytest_cache .compat
