"""benchmarks/gpu_suite.sh --smoke: the GPU suite's scripts run end to end on a CPU (tiny
sizes), so what a session lent a GPU runs has not rotted since (issue 19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_decode_and_throughput_parts_run_and_report(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    command = ["bash", "benchmarks/gpu_suite.sh", "--smoke", "decode", "throughput"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "- decode: exit 0" in summary and "- throughput: exit 0" in summary, summary

    decode = json.loads((tmp_path / "quant_gpu_decode.json").read_text())
    measured = {r["precision"]: r for r in decode["decode"] if "skipped" not in r}
    assert set(measured) == {"none", "int8", "int4"}  # fp8 needs a GPU
    # Quantized weights are smaller: the roofline's bytes per token fall with them.
    assert (measured["int4"]["weight_bytes"] < measured["int8"]["weight_bytes"]
            < measured["none"]["weight_bytes"])  # fmt: skip
    assert {r["kernel"] for r in decode["micro"]} == {"bf16 cuBLAS", "int8", "int4-g32"}

    throughput = json.loads((tmp_path / "gpu_throughput.json").read_text())
    wanted = throughput["workload"]
    for system in throughput["systems"]:  # ignore_eos: every system produces every token
        assert "error" not in system, system
        assert system["finished_requests"] == wanted["requests"], system
        assert system["output_tokens"] == wanted["output_tokens"], system
    assert [s["system"] for s in throughput["systems"]] == ["ours-bf16", "transformers",
                                                            "ours-int8"]  # fmt: skip
    assert "| transformers | 8/8 |" in (tmp_path / "gpu_throughput.md").read_text()
