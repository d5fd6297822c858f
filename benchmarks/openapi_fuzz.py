"""OpenAPI fuzzing: schemathesis against a real llm-server's own /openapi.json, many examples.

The same search as tests/server/integration/test_openapi_fuzz.py (tiny random model,
`--max-model-len 64`, `--max-waiting 16`; valid and invalid requests for every operation; each
answer checked for no 5xx, a documented status and a body, or every event of a stream, that
matches the documented schema), but random rather than derandomized (a new seed each run
unless `--seed`) and with `--examples` per operation and generation mode. A failing operation
stops at its first shrunk failure, reported with the request that reproduces it.
Writes docs/benchmarks/openapi_fuzz.{json,md}.

    python benchmarks/openapi_fuzz.py                   # 5,000 examples per operation and mode
    python benchmarks/openapi_fuzz.py --examples 1000   # a couple of minutes
    python benchmarks/openapi_fuzz.py --quick           # a small smoke run, written to /tmp
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import schemathesis

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "server" / "integration"))  # one fuzz setup, shared

from openapi_fuzzing import MAX_MODEL_LEN, MAX_WAITING, FuzzReport, fuzz, server_args  # noqa: E402
from running_server import run_server  # noqa: E402


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "openapi_fuzz.json").write_text(json.dumps(report, indent=2) + "\n")
    mach = report["machine"]
    lines = [
        "# OpenAPI fuzzing (schemathesis)",
        "",
        f"{report['date']} · {mach['cpu']} · {mach['cores']} cores · "
        f"schemathesis {mach['schemathesis']}",
        "",
        f"Server: tiny random model, `--max-model-len {MAX_MODEL_LEN}`, "
        f"`--max-waiting {MAX_WAITING}`. Up to {report['examples_per_operation']} examples per "
        f"operation and generation mode, hypothesis seed {report['seed']}. Checks: "
        "not_a_server_error, status_code_conformance, response_schema_conformance (JSON bodies "
        "and every server-sent event).",
        "",
        "| operation | mode | examples |",
        "|---|---|---:|",
    ]
    for label, count in report["examples"].items():
        operation, mode = label.rsplit(" ", 1)
        lines.append(f"| `{operation}` | {mode} | {count} |")
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(report["statuses"].items()))
    lines += [
        "",
        f"- Examples run: **{report['total_examples']}** in {report['seconds']:.0f} s "
        f"(statuses: {statuses}).",
        f"- Failures found: **{len(report['failures'])}**.",
    ]
    for failure in report["failures"]:
        lines += ["", "```", failure.strip(), "```"]
    if report["note"]:
        lines += ["", report["note"]]
    (out_dir / "openapi_fuzz.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run, written to /tmp")
    parser.add_argument("--examples", type=int, default=5000, help="per operation and mode")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one")
    parser.add_argument("--note", default="", help="a line added to the markdown report")
    parser.add_argument("--output-dir", type=Path, default=None)
    args = parser.parse_args()
    examples = 50 if args.quick else args.examples
    seed = random.getrandbits(32) if args.seed is None else args.seed
    out_dir = args.output_dir or (
        Path(tempfile.gettempdir()) / "openapi_fuzz" if args.quick else ROOT / "docs" / "benchmarks"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with run_server("tiny-random", work, *server_args(work / "cache")) as server:
            result: FuzzReport = fuzz(server.base_url, examples, derandomize=False, seed=seed)
            if server.process.poll() is not None:
                result.failures.append(f"the server exited:\n{server.log()[-4000:]}")
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench_common.machine(schemathesis=schemathesis.__version__),
        "load_average_1m": os.getloadavg()[0],
        "examples_per_operation": examples,
        "seed": seed,
        "examples": result.examples,
        "total_examples": result.total_examples,
        "statuses": {str(status): n for status, n in sorted(result.statuses.items())},
        "seconds": round(result.seconds, 1),
        "failures": result.failures,
        "note": args.note,
    }
    write_report(report, out_dir)
    print(f"{result.total_examples} examples, {len(result.failures)} failures -> {out_dir}")
    if result.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
