# Gradients in Practice: every task is a target here; `make help` lists them.
# The environment is created on first use from requirements/lock.txt and reused.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt

# Which build of torch `make env` installs: cuda where an NVIDIA GPU is found
# (`nvidia-smi -L` lists one, or the driver shows in /proc/driver/nvidia), cpu
# elsewhere; `make env TORCH=cpu|cuda` overrides. tools/install_torch.py says where
# the build comes from (the CPU build without the multi-GB NVIDIA libraries).
TORCH ?= $(shell { nvidia-smi -L 2>/dev/null | grep -q '^GPU' || test -d /proc/driver/nvidia; } && echo cuda || echo cpu)
ifeq ($(filter $(TORCH),cpu cuda),)
$(error TORCH must be cpu or cuda, got '$(TORCH)')
endif
# Marks which build the environment holds; a missing marker (another TORCH) rebuilds it.
TORCH_MARK := $(VENV)/.torch-$(TORCH)

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

# Each command written once, used by `test` and by the target that runs it alone.
define RUFF_CHECKS
$(BIN)/ruff check .
$(BIN)/ruff format --check .
endef
PYTEST := $(BIN)/python -m pytest tests -q -n 2
define NBVAL
@$(if $(NBVAL_SKIP),echo "NOTE: nbval skips $(NBVAL_SKIP): $(NBVAL_SKIP_WHY)")
$(BIN)/python -m pytest -q -n 2 --dist loadfile --nbval $(NBVAL_NOTEBOOKS) \
	--nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout=300
endef

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): $(LOCK) pyproject.toml tools/install_torch.py $(TORCH_MARK)
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; run make PYTHON=/path/to/python3.11 (the lock file is resolved for Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python tools/install_torch.py $(TORCH) --lock $(LOCK)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.torch-* && touch $(TORCH_MARK)
	touch $@

$(TORCH_MARK):
	@: absent until $(STAMP) installs the $(TORCH) build

# `make grade` runs every kernel under bubblewrap; install it where we can (root with apt).
.PHONY: bwrap
bwrap:
	@if command -v bwrap >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing bubblewrap (the grading sandbox)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null; \
	else echo "NOTE: bubblewrap is missing; make grade and make test need it" \
		"(Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)"; fi

.PHONY: env
env: $(STAMP) $(KERNELS) bwrap ## create or update the virtual environment(s) (TORCH=cpu|cuda picks torch's build); install bubblewrap if root

# The book in two editions: EDITION=full (default) into _build/html, EDITION=student
# (the exercises without their solutions, tools/student_edition.py) into _build/student/html.
EDITION ?= full
JB_BUILD := $(BIN)/jupyter-book build --warningiserror --keep-going --nitpick
STUDENT_SRC := _build/student/src

.PHONY: book
book: env ## build the HTML book into _build/html (EDITION=student: _build/student/html)
ifeq ($(EDITION),student)
	$(BIN)/python tools/student_edition.py $(STUDENT_SRC)
	$(JB_BUILD) $(STUDENT_SRC) --path-output _build/student
	rm -rf _build/student/html && mv _build/student/_build/html _build/student/html
	@echo "open _build/student/html/index.html"
else ifeq ($(EDITION),full)
	$(JB_BUILD) .
	@echo "open _build/html/index.html"
else
	@echo "make book: EDITION must be full or student, got '$(EDITION)'"; exit 2
endif

.PHONY: book-student
book-student: ## the student edition (no solutions) into _build/student/html
	$(MAKE) book EDITION=student

# `make check-book`: every page of both editions in headless Chromium (tools/check_book.py),
# MathJax from a pinned local copy of the npm package, known failures in the allow-list.
MATHJAX_VERSION := 3.2.2
MATHJAX_DIR := _build/mathjax
MATHJAX := $(MATHJAX_DIR)/node_modules/mathjax
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
CHECK_BOOK = $(BIN)/python tools/check_book.py --mathjax $(MATHJAX) $(if $(CHROMIUM),--chromium $(CHROMIUM))

$(MATHJAX)/.version-$(MATHJAX_VERSION):
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; \
	  else echo "make: check-book needs npm to fetch MathJax (apt-get install npm, as root)"; exit 1; fi; }
	rm -rf $(MATHJAX_DIR) && mkdir -p $(MATHJAX_DIR)
	npm install --prefix $(MATHJAX_DIR) --no-audit --no-fund --loglevel=error mathjax@$(MATHJAX_VERSION)
	touch $@

.PHONY: browser
browser: ## install Debian's chromium for check-book when it is missing (needs root and apt-get)
	@if [ -n "$(CHROMIUM)" ]; then echo "browser: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; \
	else echo "make: check-book needs Chromium: run 'sudo apt-get install chromium' (Debian, Ubuntu), or make check-book CHROMIUM=/path/to/chrome"; exit 1; fi

.PHONY: check-book
check-book: env browser $(MATHJAX)/.version-$(MATHJAX_VERSION) ## check both built editions in headless Chromium (after make book and make book-student)
	@for html in _build/html _build/student/html; do test -f $$html/index.html || { \
	  echo "make: $$html is missing; run make book and make book-student first"; exit 1; }; done
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_check_book.py
	$(CHECK_BOOK) _build/html --student _build/student/html --screenshots _build/screenshots

.PHONY: lint
lint: env ## ruff: lint and format check
	$(RUFF_CHECKS)

.PHONY: format
format: env ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The notebook sync check (`python -m gradbook.assignments check`) runs inside pytest:
# tests/test_assignments.py::test_notebooks_are_in_sync_with_solutions.
.PHONY: test
test: env ## everything: lint, library and exercise tests, notebook sync, nbval
	$(RUFF_CHECKS)
	$(PYTEST)
	$(NBVAL)

.PHONY: pytest
pytest: env ## only the library and exercise tests
	$(PYTEST)

.PHONY: nbval
nbval: env ## only nbval over the lesson and solution notebooks
	$(NBVAL)

.PHONY: execute
execute: env ## re-execute book/ and solutions/ notebooks in place (or only NB="a.ipynb ..."), regenerate notebooks/
	$(BIN)/python tools/execute_notebooks.py $(if $(NB),$(NB),$(NBVAL_NOTEBOOKS))
	$(BIN)/python -m gradbook.assignments metadata solutions
	$(BIN)/python -m gradbook.assignments generate solutions notebooks

.PHONY: assignments
assignments: env ## refresh the nbgrader metadata of solutions/, regenerate notebooks/ with nbgrader
	$(BIN)/python -m gradbook.assignments metadata solutions
	$(BIN)/python -m gradbook.assignments generate solutions notebooks

.PHONY: grade
grade: env ## grade with nbgrader, sandboxed: make grade SUBMISSIONS=dir [TIMEOUT=600 JOBS=1 WALL=900 MEMORY=4096]
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir [TIMEOUT=s] [JOBS=n] [WALL=s] [MEMORY=MiB]"; exit 2; }
	$(BIN)/python -m gradbook.assignments grade $(SUBMISSIONS) \
		$(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(WALL),--wall $(WALL)) $(if $(MEMORY),--memory $(MEMORY))

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
	@# resolved against the CPU build, so that no NVIDIA library enters the lock file
	.venv-lock/bin/python tools/install_torch.py cpu
	.venv-lock/bin/python -m pip install --quiet "torch==2.13.0" -e ".[tests,book,check,grading]"
	{ echo "# Exact versions for every make target (regenerate with \`make lock\`)."; \
	  echo "# torch==2.13.0 without a build tag: \`make env\` installs its CPU or CUDA build (TORCH=cpu|cuda), binder/ the CPU one."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^gradbook' | sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'; } > $(LOCK)
	.venv-lock/bin/python tools/write_environment.py
	rm -rf .venv-lock

.PHONY: clean
clean: ## remove build output (grading reports included) and caches (keeps the environments)
	rm -rf _build .pytest_cache .ruff_cache .hypothesis .theano
	find . -name __pycache__ -not -path "./.venv*" -prune -exec rm -rf {} +
