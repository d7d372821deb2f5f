# One gate: `make test` runs format check, lint, mypy, schema drift, tsc and every test.
PY := .venv/bin/python
BRIDGE := electron-bridge
HAVE_BRIDGE := $(wildcard $(BRIDGE)/package.json)

.PHONY: install test lint typecheck schemas schemas-check pytest test-node demo bench stress clean

install:
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,repo,cli]"
ifneq ($(HAVE_BRIDGE),)
	# electron is a devDependency for its types only: never download its binary
	cd $(BRIDGE) && ELECTRON_SKIP_BINARY_DOWNLOAD=1 npm ci --no-audit --no-fund
endif

lint:
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

typecheck:
	$(PY) -m mypy sidecar

schemas:
	$(PY) -m sidecar.schemas schemas
ifneq ($(HAVE_BRIDGE),)
	cd $(BRIDGE) && npm run --silent generate-types
endif

schemas-check:
	$(PY) -m sidecar.schemas --check schemas

pytest:
	$(PY) -m pytest -m "not stress" -p no:cacheprovider

test-node:
ifneq ($(HAVE_BRIDGE),)
	cd $(BRIDGE) && npm run --silent check && npm test
endif

test: lint typecheck schemas-check pytest test-node

demo:
	$(PY) -m model_repo.demo

bench:
	command -v nginx >/dev/null && command -v aria2c >/dev/null || apt-get install -y nginx aria2
	$(PY) bench/run.py

stress:
	$(PY) -m pytest -m stress -p no:cacheprovider --timeout=3600

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
