# Two commands do all set-up on a fresh clone: `make verify` and `make test`.
# Both create the virtual environment on first use and reuse it afterwards.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: verify test lint mutants env clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,pretrained,thirdparty]'
	touch $(STAMP)

verify: $(STAMP)
	$(PY) -m verification.ledger -n $(PYTEST_WORKERS)

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --claims-strict --ledger-dir reports --cov=transformer --cov-branch --cov-report=term --cov-fail-under=90

lint: $(STAMP)
	$(PY) -m ruff check .

mutants: $(STAMP)
	$(PY) -m mutation.run

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis .coverage
