#!/usr/bin/env bash
# Everything autan needs on a fresh machine: a virtual environment, torch (the CPU wheel, pinned
# first so nothing pulls CUDA packages), the project with its test tools, and the default model.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }

pip install "torch==2.13.0"
pip install -e ".[test]"
.venv/bin/autan pull smollm2 >/dev/null
