# Set-up and entry points. `make demo` is the main job, `make test` the test suite (what CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup data demo test test-slow lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real Fashion-MNIST (Debian's dataset-fashion-mnist) for the demo and the benchmarks.
data:
	bash scripts/install_fashion_mnist.sh

# The main job: the demo study (Fashion-MNIST, clean and two noise rates, CE vs Co-teaching, random vs SimCLR).
demo: setup data
	$(VENV)/bin/study launch search_spaces/demo.yaml --storage studies --name demo
	$(VENV)/bin/study report studies/demo
	@echo "Next: open studies/demo/report/dashboard.html (the report)"
	@echo "      $(VENV)/bin/study ui studies/demo       # MLflow UI on http://127.0.0.1:5000"
	@echo "      $(VENV)/bin/study status studies/demo   # trials by stage, errors"

test: setup data
	$(PY) -m pytest -q

# ruff (lint and format check) over the repository, mypy --strict on the algorithm layers (pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-slow: setup data
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
