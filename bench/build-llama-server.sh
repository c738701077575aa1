#!/usr/bin/env bash
# Build llama.cpp's llama-server, the comparison point of bench/serve.py, from the llama.cpp
# sources that llama-cpp-python's PyPI sdist carries (the same version the other benches use).
# Output: .bench/llama.cpp/bin/llama-server. Needs cmake and a C++ compiler; takes ~10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
OUT=.bench/llama.cpp
if [ -x "$OUT/bin/llama-server" ]; then exit 0; fi
command -v cmake >/dev/null || { echo "cmake is needed: apt-get install cmake" >&2; exit 1; }
mkdir -p .bench/src
.venv/bin/python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .bench/src
tar xzf ".bench/src/llama_cpp_python-$VERSION.tar.gz" -C .bench/src
SRC=".bench/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
GENERATOR=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")
cmake -S "$SRC" -B "$OUT" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$OUT" --target llama-server -j "$(nproc)"
