# Setup, run and test the tfx-kfp-gke pipeline. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
OUTPUT ?= output
TARGET ?= kfp
SPEC ?= build/pipeline-$(TARGET).$(if $(filter vertex,$(TARGET)),json,yaml)
PIP_VERSION = 25.3
BIN = $(VENV)/bin
# tfx 1.16 declares Python <3.11 although its libraries ship 3.11 wheels (DESIGN.md, Versions).
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check --ignore-requires-python

.PHONY: help setup run test test-fast compile submit constraints clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(BIN)/.installed  ## create .venv, install the pinned TFX 1.16 stack and this package

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) pip==$(PIP_VERSION)
	$(PIP_INSTALL) --constraint constraints.txt --editable '.[test,bench,lint]'
	touch $@

run: setup  ## run the whole pipeline locally on synthetic data (DATA=path.csv for your own)
	$(BIN)/tfxkfp run --output $(OUTPUT) $(if $(DATA),--data $(DATA))

test: setup  ## run the whole test suite, end-to-end pipeline runs included
	$(BIN)/python -m pytest

test-fast: setup  ## the test suite without end-to-end pipeline runs
	$(BIN)/python -m pytest -m 'not e2e'

compile: setup  ## compile for KFP (TARGET=vertex for Vertex AI); settings from TFXKFP_* variables
	$(BIN)/tfxkfp compile --target $(TARGET) --output $(SPEC)

submit: compile  ## compile, then start a run on KFP at TFXKFP_KFP_HOST and follow it
	$(BIN)/tfxkfp submit $(SPEC) --target $(TARGET) --wait

constraints:  ## re-resolve the dependency pins from scratch into constraints.txt
	rm -rf /tmp/tfxkfp-constraints && $(PYTHON) -m venv /tmp/tfxkfp-constraints
	/tmp/tfxkfp-constraints/bin/python -m pip install --quiet --ignore-requires-python \
	  'apache-beam==2.59.0' 'protobuf<5' 'numpy<2' '.[test,bench,lint]'
	{ sed -n '1,3p' constraints.txt; /tmp/tfxkfp-constraints/bin/python -m pip freeze \
	  --exclude-editable | grep -v -E '^(tfx-kfp-gke|pip|setuptools|wheel)[= @]'; } > constraints.new
	mv constraints.new constraints.txt

clean:  ## remove the virtualenv and local run output
	rm -rf $(VENV) $(OUTPUT)
