.PHONY: setup run test lint

setup:
	scripts/setup.sh

# Set everything up, then show the default model as autan loads it.
run: setup
	.venv/bin/autan inspect smollm2

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench

# Set everything up, lint, then run every test.
test: setup lint
	.venv/bin/python -m pytest -q
