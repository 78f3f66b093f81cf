# make train: fine-tune on O*NET with the packaged model.  make test: the test suite.
# Both first create/update .venv (a no-op when pyproject.toml is unchanged) and the data.
# The first of these that runs (a pyenv shim may exist without its version); 3.11 first: the
# local torch==2.13.0 CPU wheel is built for it. Override with `make PYTHON=python3.12 ...`.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3.10 python3; do \
	$$p -c '' 2>/dev/null && command -v $$p && break; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data/onet-29.3
MIRROR := ../shared/data/onet-29.3
SOC := data/soc-2018
SOC_MIRROR := ../shared/data/soc-2018

.PHONY: venv data data-summary mpnet train test test-all lint

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

venv: $(STAMP)

data: venv
	$(PY) -m occlass.data.download --dest $(DATA) --mirror $(MIRROR)
	$(PY) -m occlass.data.download --soc --dest $(SOC) --mirror $(SOC_MIRROR)

data-summary: venv data
	$(PY) -m occlass.data

# all-mpnet-base-v2 for model=mpnet-base: joins its five PyPI part wheels into models/ (once).
mpnet: venv
	$(PY) -m occlass.model.mpnet --dest models/all-mpnet-base-v2

train: venv data
	$(PY) train.py $(ARGS)

test: venv data
	$(PY) -m pytest -m "not slow" $(ARGS)

test-all: venv data
	$(PY) -m pytest $(ARGS)

lint: venv
	$(PY) -m ruff check .
