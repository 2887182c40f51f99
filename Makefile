# Gradients in Practice: every task is a target here; `make help` lists them.
# The environment is created on first use from requirements/lock.txt and reused.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt

# Notebooks that nbval validates and `make execute` refreshes.
LESSONS := $(sort $(wildcard book/*.ipynb))
SOLUTIONS := $(sort $(wildcard solutions/*.ipynb))
NOTEBOOKS := $(LESSONS) $(SOLUTIONS)
# Notebooks left out of nbval (set by included makefiles when a kernel is missing).
NBVAL_SKIP :=
# Extra kernels that must exist before notebooks run (added by included makefiles).
KERNELS :=

-include envs/*/env.mk

NBVAL_NOTEBOOKS = $(filter-out $(NBVAL_SKIP),$(NOTEBOOKS))

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; run make PYTHON=/path/to/python3.11 (3.11 or newer)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

.PHONY: env
env: $(STAMP) $(KERNELS) ## create or update the virtual environment(s)

.PHONY: book
book: env ## build the HTML book into _build/html (warnings are errors)
	$(BIN)/jupyter-book build . --warningiserror --keep-going --nitpick
	@echo "open _build/html/index.html"

.PHONY: lint
lint: env ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: format
format: env ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: test
test: env ## everything: lint, library and exercise tests, notebook sync, nbval
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest tests -q -n 2
	$(BIN)/python -m gradbook.assignments check solutions notebooks
	@$(if $(NBVAL_SKIP),echo "NOTE: nbval skips $(NBVAL_SKIP): $(NBVAL_SKIP_WHY)")
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --nbval $(NBVAL_NOTEBOOKS) \
		--nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout=300

.PHONY: pytest
pytest: env ## only the library and exercise tests
	$(BIN)/python -m pytest tests -q -n 2

.PHONY: nbval
nbval: env ## only nbval over the lesson and solution notebooks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --nbval $(NBVAL_NOTEBOOKS) \
		--nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout=300

.PHONY: execute
execute: env ## re-execute book/ and solutions/ notebooks in place, then regenerate notebooks/
	$(BIN)/python tools/execute_notebooks.py $(if $(NB),$(NB),$(NBVAL_NOTEBOOKS))
	$(BIN)/python -m gradbook.assignments generate solutions notebooks

.PHONY: assignments
assignments: env ## regenerate the student notebooks/ from solutions/
	$(BIN)/python -m gradbook.assignments generate solutions notebooks

.PHONY: grade
grade: env ## grade submitted notebooks: make grade SUBMISSIONS=dir [REPORT=report.md]
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-of-notebooks"; exit 2; }
	$(BIN)/python -m gradbook.assignments grade $(SUBMISSIONS) --report $(or $(REPORT),report.md)

.PHONY: bench
bench: env ## run the benchmarks; results land in book/data/ and the chapters
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

.PHONY: lab
lab: env ## open JupyterLab with the project's kernels
	$(BIN)/jupyter lab

.PHONY: lock
lock: ## re-resolve requirements/lock.txt from pyproject.toml (needs the network)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade "pip>=24"
	.venv-lock/bin/python -m pip install --quiet "torch==2.13.0" -e ".[tests,book]"
	{ echo "# Exact versions for every make target (regenerate with \`make lock\`)."; \
	  echo "# torch==2.13.0 without a local tag: pip takes the CPU build here, a CUDA build from PyPI elsewhere."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^gradbook' | sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'; } > $(LOCK)
	.venv-lock/bin/python tools/write_environment.py
	rm -rf .venv-lock

.PHONY: clean
clean: ## remove build output and caches (keeps the environments)
	rm -rf _build .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path "./.venv*" -prune -exec rm -rf {} +
