# Two commands do all the set-up on a fresh CPU machine (Python 3.10+, package registries only):
#   make notebooks   create .venv, install fercore pinned for CPU, run every notebook at smoke scale
#   make test        create .venv if needed, run the test suite (unit tests + nbval on the notebooks)
# and two for the browser:
#   make lab         create .venv if needed, add JupyterLab + the widgets extension, open notebooks/ in it
#                    (more JupyterLab arguments: make lab LAB_ARGS="--no-browser --port=8890"; another
#                    folder: make lab LAB_DIR=build/notebooks)
#   make browser-test  run notebook 02 in JupyterLab in a headless Chromium (Debian's chromium and
#                    chromium-driver; the test skips without them) and move its attention explorer
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The kernels that papermill and nbval start run `python` from PATH: make it the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install notebooks test lab browser-test clean

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

LAB_ARGS ?=
LAB_DIR ?= notebooks
# JupyterLab refuses to start as root (this machine, Colab) unless told to.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

$(VENV)/.lab-installed: $(VENV)/.installed requirements-lab.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,lab]"
	touch $@

lab: $(VENV)/.lab-installed
	$(PY) -m jupyterlab --notebook-dir=$(LAB_DIR) $(ALLOW_ROOT) $(LAB_ARGS)

$(VENV)/.browser-installed: $(VENV)/.lab-installed requirements-browser.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,lab,browser]"
	touch $@

browser-test: $(VENV)/.browser-installed
	$(PY) -m pytest -m browser tests/test_browser.py

clean:
	rm -rf build .pytest_cache
