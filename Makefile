# hmba_toolkit: two commands on a fresh machine (only python3 needed beforehand).
#   make demo   execute every numbered notebook on the embedded demo release -> build/
#   make test   unit tests + nbval regression checks of the notebooks
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
# deterministic kernels (thread counts and hashing change floating-point sums)
export PYTHONHASHSEED := 0
export OMP_NUM_THREADS := 1
export NUMBA_NUM_THREADS := 1
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: demo test env data clean lock regenerate bench bench-env profile docs

env: $(STAMP)

$(STAMP): binder/requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

data: $(STAMP)
	$(BIN)/python -m hmba_toolkit.datasets

demo: data
	mkdir -p build/executed build/html
	set -e; for nb in $(NOTEBOOKS); do \
	  name=$$(basename $$nb); \
	  echo "== $$name"; \
	  $(BIN)/papermill $$nb build/executed/$$name --cwd notebooks -k python3 --execution-timeout 600 --no-progress-bar; \
	  $(BIN)/jupyter nbconvert --to html --output-dir build/html build/executed/$$name --log-level WARN; \
	done
	@echo "executed notebooks in build/executed, HTML in build/html"

test: data
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider
	$(MAKE) docs

# The documentation: committed notebooks rendered by myst-nb (no execution), API from the docstrings.
# -W: any warning fails the build.
docs: $(STAMP)
	rm -rf build/docs
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs build/docs
	@echo "documentation in build/docs/index.html"

# Two locks from one resolution: binder/requirements.txt pins `.[notebooks]` (what Binder and the tutorials need);
# requirements-dev.txt adds the test and docs packages at versions compatible with it.
LOCK_HEADER_NB := "\# Exact pins of \`.[notebooks]\`: the tutorials' environment (Binder, make demo, committed notebook outputs).\n\# Regenerate with: make lock (test and docs pins: requirements-dev.txt)"
LOCK_HEADER_DEV := "\# Exact pins of \`.[dev]\` (tutorials + tests + docs): the environment of make test and CI.\n\# Regenerate with: make lock\n-r binder/requirements.txt"
lock:
	rm -rf build/lock-nb build/lock-dev
	$(PYTHON) -m venv build/lock-nb && $(PYTHON) -m venv build/lock-dev
	build/lock-nb/bin/pip install --quiet -c tools/lock-constraints.txt ".[notebooks]"
	{ echo -e $(LOCK_HEADER_NB); build/lock-nb/bin/pip freeze --exclude-editable --all | grep -v -E '^(pip|hmba.toolkit)=='; } > binder/requirements.txt
	build/lock-dev/bin/pip install --quiet -c tools/lock-constraints.txt -c binder/requirements.txt ".[dev]"
	{ echo -e $(LOCK_HEADER_DEV); build/lock-dev/bin/pip freeze --exclude-editable --all | grep -v -E '^(pip|hmba.toolkit)==' \
	  | grep -v -x -F -f binder/requirements.txt; } > requirements-dev.txt

# Benchmarks against the peers (not part of make test: timings are not tests). BrainSMASH is
# GPL-3.0: a bench-only dependency, installed here and never imported by the package.
bench-env: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check brainsmash==0.11.0

bench: bench-env
	OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=2 $(BIN)/python bench/bench_variogram.py 1000 2000
	OMP_NUM_THREADS=2 $(BIN)/python bench/bench_map_enrichment.py
	OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=2 $(BIN)/python bench/bench_wilcoxon.py 50000 2000
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_aggregate.py 200000 5000 60
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_unionize.py 1000
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_stream.py 200000 20000 1500
	OMP_NUM_THREADS=2 $(BIN)/python bench/bench_spatial_lag.py 2500 30000 100

clean:
	rm -rf build $(VENV)

# Run the series with a parameter profile: make profile PROFILE=publication (notebooks/params/<name>.yaml)
profile: data
	@test -n "$(PROFILE)" || { echo "usage: make profile PROFILE=<name of notebooks/params/*.yaml>"; exit 2; }
	mkdir -p build/profile-$(PROFILE)
	set -e; for nb in $(NOTEBOOKS); do \
	  name=$$(basename $$nb); \
	  $(BIN)/python tools/notebook_tools.py params notebooks/params/$(PROFILE).yaml $$nb > build/profile-$(PROFILE)/$${name%.ipynb}.yaml; \
	  $(BIN)/papermill $$nb build/profile-$(PROFILE)/$$name -f build/profile-$(PROFILE)/$${name%.ipynb}.yaml \
	    --cwd notebooks -k python3 --no-progress-bar; \
	done

# Regenerate the committed outputs in the locked environment (then review and commit).
regenerate: data
	set -e; for nb in $(NOTEBOOKS); do \
	  $(BIN)/papermill $$nb $$nb --cwd notebooks -k python3 --execution-timeout 600 --no-progress-bar; \
	done
	$(BIN)/python tools/notebook_tools.py strip $(NOTEBOOKS)
