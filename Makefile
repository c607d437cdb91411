PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint docs clean

# The venv is created once; the marker files record which extras are installed.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-docs: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/chainrule demo

test: $(VENV)/.installed-test
	scripts/system-deps
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(VENV)/.installed-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The API reference (from the docstrings), the tutorials and the differences from PyTorch, into
# site/. --strict: a broken reference or a missing included file fails the build (--quiet
# would hide the warnings that strict mode counts).
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info site
