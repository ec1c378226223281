# twinscan: two commands for a newcomer — `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := nmap ndiff iproute2 nftables iptables tcpdump masscan chromium scanlogd
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench clean

setup: $(STAMP)
	@bash scripts/install-system-deps.sh $(APT_PACKAGES)
	@# bytecode for the editable install, as pip writes it for an installed package: with
	@# PYTHONDONTWRITEBYTECODE set, every run would otherwise compile twinscan (~65 ms)
	@$(PY) -m compileall -q src

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . --group dev
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/twinscan demo

lint: setup
	$(VENV)/bin/ruff check --no-cache src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q

test: lint typecheck unit

bench: setup
	$(VENV)/bin/twinscan bench

clean:
	-$(VENV)/bin/twinscan lab down 2>/dev/null
	rm -rf $(VENV) out
