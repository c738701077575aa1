.PHONY: setup run test lint

setup:
	scripts/setup.sh

PROMPT ?= What is the capital of France?

# Set everything up, then answer a prompt with the default model, streamed.
run: setup
	.venv/bin/autan run smollm2 "$(PROMPT)"

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench

# Set everything up, lint, then run every test.
test: setup lint
	.venv/bin/python -m pytest -q
