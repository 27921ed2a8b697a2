# `make run` and `make test` are all a newcomer needs: both create .venv when it is
# missing and (re)install the project when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint clean

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp on first install (about 5 minutes); pip caches the wheel.
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/smallthinker

lint: $(INSTALLED)
	$(VENV)/bin/ruff check app engine ui tests bench
	$(VENV)/bin/ruff format --check app engine ui tests bench

test: $(INSTALLED) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
