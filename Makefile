# breastzoo: the two README commands (make demo, make test) plus helpers.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: the main job on the built-in synthetic demo data
demo: $(STAMP)
	$(BIN)/python -m breastzoo.demo

## make test: the test suite (what CI runs); slow tests: make test-slow
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q --timeout=900

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
