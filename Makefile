# One gate: `make test` runs format check, lint, mypy, schema drift, tsc and every test.
# Every target sets up what it needs first (a stamp per environment), so `make demo` and
# `make test` work as the first command on a fresh clone and cost nothing once it is current.
PYTHON ?= python3
PY := .venv/bin/python
BRIDGE := electron-bridge
HAVE_BRIDGE := $(wildcard $(BRIDGE)/package.json)
# Newer than pyproject.toml: the venv has the project and its tools as it declares them.
PY_ENV := .venv/.installed
# npm ci writes node_modules/.package-lock.json; newer than the lock file: installed as locked.
NODE_ENV := $(if $(HAVE_BRIDGE),$(BRIDGE)/node_modules/.package-lock.json)

.PHONY: install test lint typecheck schemas schemas-check pytest test-node demo bench bench-repo stress clean

# The environment alone, reinstalled even when current.
install:
	@rm -f $(PY_ENV) $(NODE_ENV)
	@$(MAKE) --no-print-directory $(PY_ENV) $(NODE_ENV)

$(PY_ENV): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: needs Python >= 3.11 as '$(PYTHON)' (found: $$($(PYTHON) --version 2>&1));" \
	    "name another with PYTHON=, e.g. make PYTHON=python3.12" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,repo,cli]"
	touch $@

ifneq ($(HAVE_BRIDGE),)
$(NODE_ENV): $(BRIDGE)/package-lock.json
	@node -e 'process.exit(parseInt(process.versions.node) < 20 ? 1 : 0)' 2>/dev/null || { \
	  echo "make: the bridge needs Node.js >= 20 with npm (found: $$(node --version 2>&1))" >&2; \
	  exit 1; }
	# electron is a devDependency for its types only: never download its binary
	cd $(BRIDGE) && ELECTRON_SKIP_BINARY_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@
endif

lint: $(PY_ENV)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

typecheck: $(PY_ENV)
	$(PY) -m mypy sidecar

schemas: $(PY_ENV) $(NODE_ENV)
	$(PY) -m sidecar.schemas schemas
ifneq ($(HAVE_BRIDGE),)
	cd $(BRIDGE) && npm run --silent generate-types
endif

schemas-check: $(PY_ENV)
	$(PY) -m sidecar.schemas --check schemas

# pytest exits 5 when it ran no test: that fails the build like any other failure, on purpose.
pytest: $(PY_ENV)
	$(PY) -m pytest -m "not stress" -p no:cacheprovider

test-node: $(NODE_ENV)
ifneq ($(HAVE_BRIDGE),)
	cd $(BRIDGE) && npm run --silent check && npm test
endif

test: lint typecheck schemas-check pytest test-node

demo: $(PY_ENV)
	$(PY) -m model_repo.demo

bench: $(PY_ENV)
	command -v nginx >/dev/null && command -v aria2c >/dev/null || apt-get install -y nginx aria2
	$(PY) bench/run.py

# Usage events from 200 clients for 30 s against the reference server on PostgreSQL.
bench-repo: $(PY_ENV)
	command -v pg_ctlcluster >/dev/null || apt-get install -y postgresql
	$(PY) bench/repo_load.py

stress: $(PY_ENV)
	$(PY) -m pytest -m stress -p no:cacheprovider --timeout=3600

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
