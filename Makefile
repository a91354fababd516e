# Two commands do all the set-up on a fresh CPU machine (Python 3.10+, package registries only):
#   make notebooks   create .venv, install fercore pinned for CPU, run every notebook at smoke scale
#   make test        create .venv if needed, run the test suite (unit tests + nbval on the notebooks)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The kernels that papermill and nbval start run `python` from PATH: make it the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install notebooks test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

notebooks: install
	$(PY) -m fercore notebooks --scale smoke --out build/notebooks

test: install
	$(PY) -m pytest tests --nbval-lax notebooks

clean:
	rm -rf build .pytest_cache
