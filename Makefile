# Set-up and everyday commands. `make demo` and `make test` install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Jobs run `python scripts/...`: put the project's environment first on PATH for them.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# ... and import this checkout's package (also from another worktree sharing the venv).
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install demo test test-fast lint format clean-demo

## install: create .venv with the pinned dependencies of pyproject.toml (no-op when current)
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

## demo: the whole pipeline on the embedded synthetic dataset, on the CPU (results/demo/)
demo: install
	snakemake --profile profiles/demo

## test: the whole test suite (unit, end-to-end workflow, Slurm where installed)
test: install
	python -m pytest

## test-fast: the unit tests only (no end-to-end workflow or Slurm runs; about a minute)
test-fast: install
	python -m pytest -m "not slow"

## lint: ruff, snakefmt and snakemake --lint
lint: install
	ruff check .
	ruff format --check .
	snakefmt --check Snakefile rules
	snakemake --lint --configfile configs/demo.yaml
	snakemake --lint

## format: apply ruff and snakefmt formatting
format: install
	ruff format .
	ruff check --fix .
	snakefmt Snakefile rules

## clean-demo: remove the demo's outputs (data/shapes, results/demo) to run it from scratch
clean-demo:
	rm -rf data/shapes results/demo results/logs results/benchmarks
