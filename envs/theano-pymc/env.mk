# The legacy environment for chapter 3's Theano notebook, as a second kernel.
#
# Included by the top-level Makefile (`-include envs/*/env.mk`) before its
# targets. Uses PYTHON, VENV and STAMP from there; adds to KERNELS (what `make env`
# builds), or, when no Python 3.11 exists, to NBVAL_SKIP and NBVAL_SKIP_WHY.
#
#   make env                                  both environments, kernel registered
#   make theano-env                           only this one
#   make test THEANO_PYTHON=/path/to/python3.11

THEANO_PYTHON ?= python3.11
THEANO_VENV := .venv-theano
THEANO_REQUIREMENTS := envs/theano-pymc/requirements.txt
THEANO_STAMP := $(THEANO_VENV)/.installed
THEANO_NOTEBOOK := book/03a-theano-scan.ipynb
THEANO_KERNEL := theano-pymc
THEANO_KERNEL_JSON := $(VENV)/share/jupyter/kernels/$(THEANO_KERNEL)/kernel.json
# Python-mode scan (its C extension does not build against Python 3.11), no BLAS
# detection (it crashes on numpy.distutils at import), a compile dir in the project.
THEANO_KERNEL_FLAGS := cxx=,blas__ldflags=,base_compiledir=$(abspath .theano)

# "3.11" when THEANO_PYTHON runs and is Python 3.11; empty or another version otherwise.
THEANO_PYTHON_VERSION := $(shell $(THEANO_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

ifeq ($(THEANO_PYTHON_VERSION),3.11)
KERNELS += $(THEANO_STAMP)
else
NBVAL_SKIP += $(THEANO_NOTEBOOK)
NBVAL_SKIP_WHY += the Theano-PyMC kernel needs Python 3.11 and '$(THEANO_PYTHON)' $(if $(THEANO_PYTHON_VERSION),is Python $(THEANO_PYTHON_VERSION),was not found); install Python 3.11 or run make test THEANO_PYTHON=/path/to/python3.11 (everything else still runs).
endif

$(THEANO_STAMP): $(STAMP) $(THEANO_REQUIREMENTS) envs/theano-pymc/env.mk
	test -x $(THEANO_VENV)/bin/python || $(THEANO_PYTHON) -m venv $(THEANO_VENV)
	$(THEANO_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(THEANO_VENV)/bin/python -m pip install --quiet -r $(THEANO_REQUIREMENTS)
	@# installs into the main environment's prefix, where its Jupyter looks (ipykernel
	@# warns that this is not where .venv-theano's own Jupyter would look: expected)
	$(THEANO_VENV)/bin/python -m ipykernel install --prefix $(abspath $(VENV)) \
		--name $(THEANO_KERNEL) --display-name "Python (Theano-PyMC 1.1.2)" \
		--env THEANO_FLAGS "$(THEANO_KERNEL_FLAGS)"
	@echo "registered kernel $(THEANO_KERNEL): $(THEANO_KERNEL_JSON)"
	touch $@

.PHONY: theano-env
theano-env: ## only the legacy Theano-PyMC environment and its kernel (needs Python 3.11)
ifeq ($(THEANO_PYTHON_VERSION),3.11)
theano-env: $(THEANO_STAMP)
else
	@echo "make: $(NBVAL_SKIP_WHY)"; exit 1
endif
