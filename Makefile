# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv

.PHONY: run test lint venv clean bench bench-throughput lock

$(VENV)/.installed: pyproject.toml constraints.txt
	PYTHON=$(PYTHON) ./scripts/bootstrap-venv.sh
	touch $@

venv: $(VENV)/.installed

# Re-resolve the pinned versions in constraints.txt from pyproject.toml (commit the result).
lock:
	PYTHON=$(PYTHON) ./scripts/lock.sh

run: venv
	./scripts/run-demo.sh

lint: venv
	$(VENV)/bin/ruff check relay tests bench
	$(VENV)/bin/ruff format --check relay tests bench
	$(VENV)/bin/mypy relay

test: venv
	./scripts/install-system-deps.sh
	$(MAKE) lint
	$(VENV)/bin/python -m pytest

bench: venv
	$(VENV)/bin/python bench/run.py

# Only the interleaved throughput run (ccguard vs the libraries' floor and Postfix).
bench-throughput: venv
	$(VENV)/bin/python bench/bench_throughput.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
