#!/usr/bin/env bash
# Builds llama.cpp's llama-server (and llama-quantize) from the llama.cpp source that PyPI's
# llama-cpp-python sdist vendors, for benchmarks/server_vs_peers.py (make bench, never make test).
# Idempotent and cached outside the repo; prints the llama-server binary's path on the last line.
#   LLAMA_CACHE_DIR   cache folder (default ~/.cache/llm-operator/llama.cpp)
#   LLAMA_CPP_PYTHON  sdist version to pin (default: the newest PyPI offers)
#   LLAMA_BUILD_JOBS  parallel compile jobs (default 2)
set -euo pipefail

CACHE_DIR="${LLAMA_CACHE_DIR:-$HOME/.cache/llm-operator/llama.cpp}"
JOBS="${LLAMA_BUILD_JOBS:-2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIP="${PIP:-$HERE/.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"

for tool in cmake g++ make tar; do
  command -v "$tool" >/dev/null || {
    echo "build_llama_server: '$tool' is missing (Debian: apt-get install cmake g++ make)" >&2
    exit 1
  }
done

mkdir -p "$CACHE_DIR"
cd "$CACHE_DIR"

# 1. The sdist (downloaded once; a pinned version downloads that one).
spec="llama-cpp-python${LLAMA_CPP_PYTHON:+==$LLAMA_CPP_PYTHON}"
sdist="$(ls -1 llama_cpp_python-"${LLAMA_CPP_PYTHON:-}"*.tar.gz 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$sdist" ]; then
  $PIP download -q --no-binary :all: --no-deps "$spec" -d . >&2
  sdist="$(ls -1 llama_cpp_python-*.tar.gz | sort -V | tail -1)"
fi
src="${sdist%.tar.gz}"

# 2. Unpacked source (a marker file says the unpack finished).
if [ ! -f "$src/.unpacked" ]; then
  rm -rf "$src"
  tar xzf "$sdist"
  touch "$src/.unpacked"
fi
llama_src="$src/vendor/llama.cpp"
build="$src/build"

# 3. Configure and build only the two targets the benchmark needs.
if [ ! -x "$build/bin/llama-server" ]; then
  cmake -S "$llama_src" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$build" --target llama-server -j"$JOBS" >&2
fi
if [ ! -x "$build/bin/llama-quantize" ]; then
  # Cheap once ggml is built; makes the F16/F32 GGUF for the benchmark (a failure is not fatal).
  cmake --build "$build" --target llama-quantize -j"$JOBS" >&2 ||
    echo "build_llama_server: llama-quantize did not build; F16/F32 peers will be skipped" >&2
fi

# Record the version the benchmark reports (the vendored llama.cpp has no .git).
{
  echo "llama_cpp_python=${src#llama_cpp_python-}"
  "$build/bin/llama-server" --version 2>&1 | grep -i -E 'version|built' | tr '\n' ' '
  echo
} >"$build/VERSION"
echo "$CACHE_DIR/$build/bin/llama-server"
