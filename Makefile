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

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
