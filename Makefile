# handstep: the README's two commands are `make site` and `make test`.
# Each sets up what it needs (a .venv, npm packages) once, tracked by stamp files.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SEED   ?= 7
CONFIG ?= configs/default.yaml

RUN_STAMP  := $(VENV)/.stamp-runtime
DEV_STAMP  := $(VENV)/.stamp-dev
NODE_STAMP := node_modules/.stamp

.PHONY: site test serve trace diff docs verify bench lint clean

# Python's bytecode of handstep's own modules, written even where PYTHONDONTWRITEBYTECODE is set (it saves a
# quarter of a second on every command), and checked against the source's content, not its time
# (site_build/bytecode.py; `handstep` does it too). Only a module whose bytecode is missing or checked by time is
# compiled (Python 3.11's compileall would compile every file again on every call).
BYTECODE = $(BIN)/python -m site_build.bytecode

# The default site must show every record of its trace; other configs report the count.
COVERAGE = $(if $(filter configs/default.yaml,$(CONFIG)),--require-coverage,)

site: $(RUN_STAMP) $(NODE_STAMP)
	@$(BYTECODE)
	$(BIN)/handstep build --config $(CONFIG) --out site $(COVERAGE)

# The tests do not run `make verify`: one of them fails when the committed comparison of the default config
# (configs/verification/default.json) no longer belongs to the default trace, and regenerating it first would hide that.
test: $(DEV_STAMP) $(NODE_STAMP)
	$(BIN)/ruff check engine site_build tests benchmarks
	$(BIN)/python -m pytest -q

# Compare the configured trace with Hugging Face GPT-2 + torch.optim; the site shows the figures. The default config's
# go to configs/verification/default.json (commit it), any other CONFIG's to build/verification.json.
verify: $(DEV_STAMP)
	$(BIN)/python tests/engine/verify_hf.py --config $(CONFIG)

serve: $(RUN_STAMP) $(NODE_STAMP)
	@$(BYTECODE)
	$(BIN)/handstep serve --config $(CONFIG)

trace: $(RUN_STAMP)
	$(BIN)/handstep trace --config $(CONFIG) --out build/trace.json

# Default seed vs SEED (exit status 1 from `handstep diff` only means "different").
diff: $(RUN_STAMP)
	$(BIN)/handstep trace --config $(CONFIG) --out build/trace-a.json
	$(BIN)/handstep trace --config $(CONFIG) --seed $(SEED) --out build/trace-seed$(SEED).json
	$(BIN)/handstep diff build/trace-a.json build/trace-seed$(SEED).json || [ $$? -eq 1 ]

# Regenerate docs/records.md from real traces (a test fails when it is stale).
docs: $(RUN_STAMP)
	$(BIN)/python -m engine.docs docs/records.md

bench: $(DEV_STAMP) $(NODE_STAMP)
	@$(BYTECODE)
	$(BIN)/python -m benchmarks.bench

lint: $(DEV_STAMP)
	$(BIN)/ruff check engine site_build tests benchmarks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf site build .cache test-artifacts .pytest_cache .ruff_cache
