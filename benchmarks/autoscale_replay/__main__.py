"""Command line: replay every configuration on both trace halves, write the held-out report.

python benchmarks/run_autoscale_replay.py           # full sweep: docs/benchmarks/
python benchmarks/run_autoscale_replay.py --quick   # a small sweep, written to /tmp
cd benchmarks && python -m autoscale_replay         # the same
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import bench_common  # benchmarks/bench_common.py (benchmarks/ is on sys.path)
from llm_operator import __version__ as operator_version
from llm_operator.catalog import default_catalog
from llm_operator.cost import replica_dollars_per_hour

from . import analysis, plots, report
from .frontier import Pair, cheapest_at, held_out
from .simulator import Capacity, SimConfig, calibrated
from .sweep import init_worker, run_pair, sweep
from .trace import DEFAULT_TRACE, ROOT, halves, load_trace


def machine() -> dict[str, Any]:
    import matplotlib

    return bench_common.machine(llm_operator=operator_version, matplotlib=matplotlib.__version__)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Autoscaler replay, held-out")
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply arrival times; 1 = real time"
    )
    parser.add_argument(
        "--calibrate", type=Path, default=None, help="a server_throughput.json for the capacity"
    )
    parser.add_argument("--accelerator", default="L40S", help="catalog entry for the price")
    parser.add_argument("--prefill", type=float, default=None, help="prefill tokens/s override")
    parser.add_argument("--start-delay", type=float, default=90.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--slo-ttft", type=float, default=2.0)
    parser.add_argument("--slo-level", type=float, default=0.99)
    parser.add_argument("--scrape-failure-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="small sweep, written to /tmp")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--pairs",
        type=Path,
        default=None,
        help="pickle of every configuration's runs: written after a sweep, read instead of "
        "one when it exists (to redo the report without replaying; not for committing)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    trace = load_trace(args.trace, args.time_scale)
    first, second, cut = halves(trace)
    capacity = calibrated(args.calibrate) if args.calibrate else Capacity()
    if args.prefill:
        capacity = replace(
            capacity,
            prefill_tokens_per_s=args.prefill,
            source=capacity.source + f", prefill set to {args.prefill:g} tokens/s",
        )
    price = replica_dollars_per_hour(default_catalog(), args.accelerator, 1, "on-demand")
    sim = SimConfig(
        capacity,
        price,
        args.start_delay,
        args.interval,
        args.slo_ttft,
        args.scrape_failure_rate,
        args.seed,
    )
    configs = sweep(args.quick, args.interval, capacity.prefill_tokens_per_s)
    if args.pairs and args.pairs.exists():
        results: list[Pair] = pickle.loads(args.pairs.read_bytes())
    else:
        init = ((first, second), sim)  # each worker gets the halves once, not with every job
        with ProcessPoolExecutor(args.workers, initializer=init_worker, initargs=init) as pool:
            results = list(pool.map(run_pair, configs, chunksize=8))
        if args.pairs:
            args.pairs.write_bytes(pickle.dumps(results))
    pairs: dict[str, list[Pair]] = {}
    for (name, *_), pair in zip(configs, results, strict=True):
        pairs.setdefault(name, []).append(pair)
    compression = (
        "none (real time, 1.0x)"
        if args.time_scale == 1.0
        else f"arrival times multiplied by {args.time_scale:g}"
    )
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "setup": {
            "trace": args.trace.name,
            "requests": len(trace),
            "trace_seconds": trace[-1].arrival,
            "time_scale": args.time_scale,
            "time_compression": compression,
            "capacity": asdict(capacity),
            "accelerator": args.accelerator,
            "dollars_per_replica_hour": price,
            "start_delay_s": sim.start_delay_s,
            "interval_s": sim.interval_s,
            "slo_ttft_s": sim.slo_ttft_s,
            "scrape_failure_rate": sim.scrape_failure_rate,
            "seed": sim.seed,
            "quick": args.quick,
        },
        "split": {"cut_s": cut, "first_requests": len(first), "second_requests": len(second)},
        "configurations_per_policy": {name: len(p) for name, p in pairs.items()},
        "directions": analysis.summarize(pairs),
        "runs": [],
    }
    out_dir = args.out or (
        Path(tempfile.gettempdir()) / "autoscale_replay"
        if args.quick
        else ROOT / "docs" / "benchmarks"
    )
    report.write(out_dir, document)
    fronts = {
        text: {name: held_out(pairs[name], tune) for name in analysis.SHOWN}
        for tune, text in analysis.DIRECTIONS
    }
    plots.plot_frontier(fronts, args.slo_level, out_dir / "autoscale_replay_frontier.png")
    first_direction = next(iter(fronts.values()))
    picked = {
        name: cheapest_at(front, args.slo_level) or front[-1]
        for name, front in first_direction.items()
    }
    plots.plot_timelines(picked, args.interval, out_dir / "autoscale_replay_timeline.png")
    print((out_dir / "autoscale_replay.md").read_text())


if __name__ == "__main__":
    main()
