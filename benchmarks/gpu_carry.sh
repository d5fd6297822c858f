#!/usr/bin/env bash
# Prepares what benchmarks/gpu_suite.sh needs on the lent GPU machine and cannot find there
# (it has no internet): the `gguf` wheel and SmolLM2's GGUF file (98 MB). One device call
# carries at most 64 MiB, so the file travels in two halves, one per call:
#   .gpu_carry/a: the first half            -> call 1 (gpu_suite.sh decode) stages it in /tmp
#   .gpu_carry/b: the second half, the wheel -> call 2 (gpu_suite.sh tests throughput) joins them
# and the SHA-256 of the whole file goes in both, so a wrong join is caught, not tested.
# Run here (needs make venv); docs/gpu-validation.md has the two calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$PWD/.venv/bin/python"
model=$(cd benchmarks && "$PY" -c 'from quant_fidelity import smollm2_gguf; print(smollm2_gguf())')
name=$(basename "$model")  # the parts carry it: the suite joins them under the same name
rm -rf .gpu_carry && mkdir -p .gpu_carry/a .gpu_carry/b
size=$(stat -c %s "$model")
half=$(((size + 1) / 2))
head -c "$half" "$model" >".gpu_carry/a/$name.part0"
tail -c +"$((half + 1))" "$model" >".gpu_carry/b/$name.part1"
sha256sum "$model" | cut -d' ' -f1 | tee ".gpu_carry/a/$name.sha256" >".gpu_carry/b/$name.sha256"
# The device runs Python 3.12; gguf is pure Python (its needs, numpy, pyyaml, requests and tqdm,
# are on the device image).
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d .gpu_carry/b gguf==0.19.0
du -sh .gpu_carry/a .gpu_carry/b
