.PHONY: setup setup-test run test lint bench

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

PROMPT ?= What is the capital of France?

# Set everything up, then answer a prompt with the default model, streamed. Greedy (temperature
# 0), so the answer is the model's most likely one every time: sampled at the model's recommended
# temperature, this 135M model strays from "Paris" on about one seed in ten.
run: setup
	.venv/bin/autan run smollm2 "$(PROMPT)" --temperature 0

lint:
	.venv/bin/ruff check src tests bench scripts setup.py
	.venv/bin/ruff format --check src tests bench scripts setup.py

# Set everything up (with the browser and database the tests use), lint, then run every test.
test: setup-test lint
	.venv/bin/python -m pytest -q

# Benchmarks (not part of the tests): figures go to docs/benchmarks.md. llama.cpp is only the
# comparison point: llama-cpp-python, llama-bench and llama-server are all compiled from the same
# sources (~25 minutes on 2 cores). dense7b.py writes a 4.2 GB model under .bench/, and a 4.1 GB
# Q4_K_M one with llama-quantize.
bench: setup
	.venv/bin/python -m pip install -q "llama-cpp-python==0.3.36"
	bench/build-llama-cpp.sh
	cd bench && ../.venv/bin/python memory.py && ../.venv/bin/python speed.py && ../.venv/bin/python throughput.py
	cd bench && ../.venv/bin/python serve.py && ../.venv/bin/python serve.py --streams 1 && ../.venv/bin/python quantize.py && ../.venv/bin/python moe.py
	cd bench && ../.venv/bin/python greedy.py && ../.venv/bin/python accuracy.py && ../.venv/bin/python dense7b.py
	cd bench && ../.venv/bin/python dense7b.py --format q4_k_m
	cd bench && ../.venv/bin/python step_profile.py
	cd bench && ../.venv/bin/python eval_speed.py && ../.venv/bin/python finetune.py
