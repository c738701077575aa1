#!/usr/bin/env bash
# Build llama.cpp's llama-bench and llama-server, the comparison points of bench/speed.py and
# bench/serve.py (and llama-quantize, which makes bench/dense7b.py's Q4_K_M file), from the llama.cpp sources that llama-cpp-python's PyPI sdist carries (the
# same version the other benches use), with native flags for this CPU, but without AMX where
# the OS refuses its tile state (cpuid advertises AMX on these VMs, and the first ldtilecfg
# kills the process): autan's own feature check (arch_prctl) decides.
# Output: .bench/llama.cpp/bin/{llama-bench,llama-server,llama-quantize}. Needs cmake and a C++ compiler; ~10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
OUT=.bench/llama.cpp
if [ -x "$OUT/bin/llama-server" ] && [ -x "$OUT/bin/llama-bench" ] && [ -x "$OUT/bin/llama-quantize" ]; then exit 0; fi
command -v cmake >/dev/null || { echo "cmake is needed: apt-get install cmake" >&2; exit 1; }
mkdir -p .bench/src
.venv/bin/python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .bench/src
tar xzf ".bench/src/llama_cpp_python-$VERSION.tar.gz" -C .bench/src
SRC=".bench/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
AMX=$(.venv/bin/python -c "from autan import native; m = native.module(); print(int(bool(m and m.features()['amx'])))")
FLAGS=$([ "$AMX" = 1 ] || echo "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
GENERATOR=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")
cmake -S "$SRC" -B "$OUT" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
cmake --build "$OUT" --target llama-server llama-bench llama-quantize -j "$(nproc)"
