# Each target creates .venv and installs the project into it when missing or stale.
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: shell test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

shell: $(STAMP)
	$(VENV)/bin/meridian-bot shell

# The oracle RPC tests run a local Ethereum node, ganache, installed from the npm registry.
# Without npm the install is skipped with a notice, and those tests report themselves skipped.
GANACHE_DIR := tests/ethereum
GANACHE := $(GANACHE_DIR)/node_modules/.bin/ganache

$(GANACHE): $(GANACHE_DIR)/package.json $(GANACHE_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(GANACHE_DIR) --no-audit --no-fund --loglevel=error && touch $(GANACHE); \
	else \
		echo "npm not found: the tests that need ganache will be skipped (install Node.js 18 or newer)"; \
	fi

test: $(STAMP) $(GANACHE)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache $(GANACHE_DIR)/node_modules
