"""Operator at scale on a real control plane: 1,000 LLMDeployments (a benchmark, not a test).

- The control plane of tests/support (etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler v1.36.2 on loopback), the project's CRDs, fake GPU Nodes (8 L4 each, enough
  for every LLMDeployment's replica plus a rollout's surge pod) and the fake kubelet, so
  Deployments get ReplicaSets, pods are scheduled and turn Ready, as in a cluster.
- The operator as its own process (`python -m llm_operator`, admin kubeconfig), so its CPU
  and peak RSS (VmHWM) are its own; each control-plane process's CPU from /proc/PID/stat.
- This process drives: creates the LLMDeployments with 32 parallel clients, watches them
  (time of each one's first status, first ready replica, status of generation 2), changes
  every spec once, then idles 30 s.

Goals (issue 16): every LLMDeployment has a status < 60 s after the last create; reconcile
p99 < 1 s (the operator's histogram, create phase); operator RSS < 300 MB.

    .venv/bin/python benchmarks/operator_scale.py [--count 1000] [--quick] [--gpu-nodes N]
        [--skip-change] [--profile FOLDED] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from control_plane import ENVTEST_VERSION, ControlPlane, find_etcd, free_port  # noqa: E402
from fake_kubelet import FakeKubelet, register_node  # noqa: E402
from kube_client import Kube  # noqa: E402

import bench_common  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
import operator_scale_report as report  # noqa: E402
from operator_scale_probes import (  # noqa: E402
    Watcher,
    cpu_seconds,
    fetch,
    parallel,
    peak_rss_mb,
    until,
    until_rolled_out,
)

OUT = ROOT / "docs" / "benchmarks"
NAMESPACE = "bench"
GROUP_VERSION = "inference.llmops.dev/v1alpha1"
LLMD_PATH = f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/llmdeployments"
CLIENTS = 32
GPUS_PER_NODE = 8
STEADY_SECONDS = 30.0
ROLLOUT_WAIT_SECONDS = 240.0
READY_WAIT_SECONDS = 180.0  # pods come at the controller-manager's default 20 requests/s
L4_LABELS = {"nvidia.com/gpu.product": "NVIDIA-L4"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
RECONCILE_HISTOGRAM = "llm_operator_reconcile_duration_seconds"


def manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "LLMDeployment",
        "metadata": {"name": f"chat-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": f"hf://org/model-{index % 7}", "parameterCount": "8B"},
            "optimization": {"quantization": "int8"},
            "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
            "replicas": {"min": 1, "max": 4},
        },
    }


# --- measuring processes ----------------------------------------------------------------------


# --- the run ----------------------------------------------------------------------------------


class Run:
    def __init__(self, plane: ControlPlane, operator: subprocess.Popen[bytes], port: int):
        self.plane, self.operator, self.metrics_port = plane, operator, port
        self.marks: dict[str, dict[str, Any]] = {}
        self.cpu_start = time.process_time()

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.plane.processes.items()}
        return {**out, "operator": self.operator.pid}

    def mark(self, name: str, kube: Kube) -> None:
        apiserver = report.parse_metrics(kube.http.get("/metrics").text)
        self.marks[name] = {
            "at": time.monotonic(),
            "cpu": {
                **{p: cpu_seconds(pid) for p, pid in self.pids().items()},
                "driver": time.process_time() - self.cpu_start,
            },
            "operator": report.parse_metrics(fetch(f"http://127.0.0.1:{self.metrics_port}/")),
            "apiserver": report.request_table(apiserver),
            "apiserver_samples": apiserver,
        }


def start_operator(plane: ControlPlane, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "llm_operator", "-n", NAMESPACE, "--standalone"]
    log = (workdir / "operator.log").open("wb")
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    return subprocess.Popen(
        [*argv, "--metrics-port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
    )


def wait_operator_watching(kube: Kube, port: int, operator: subprocess.Popen[bytes]) -> None:
    """Until kopf's watch on LLMDeployments is open (the load must find it watching)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.returncode}")
        try:
            fetch(f"http://127.0.0.1:{port}/")
            watches = report.sum_by(
                report.parse_metrics(kube.http.get("/metrics").text),
                "apiserver_longrunning_requests",
                ["verb", "resource"],
            )
            if watches.get(("WATCH", "llmdeployments"), 0) >= 1:
                time.sleep(2)  # the children's and pods' watches open alongside
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the operator did not start watching in 120 s")


def start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy on the operator through the create phase (folded stacks, for --profile)."""
    if args.profile is None:
        return None
    argv = [args.py_spy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw"]
    return subprocess.Popen([*argv, "--output", str(args.profile)], stdout=subprocess.DEVNULL)


def drive(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plane = ControlPlane(workdir / "control-plane").start()
    operator = None
    admin = lambda: Kube(plane.url, str(plane.ca_file), cert=plane.admin_cert())  # noqa: E731
    kube = admin()
    clients = [admin() for _ in range(CLIENTS)]
    try:
        crds = [d for p in sorted((ROOT / "crds").glob("*.yaml"))
                for d in yaml.safe_load_all(p.read_text()) if d]  # fmt: skip
        for crd in crds:
            kube.apply(crd)
        for crd in crds:
            kube.wait_established(crd["metadata"]["name"])
        kube.ensure_namespace(NAMESPACE)
        nodes = [f"gpu-{i:04d}" for i in range(args.gpu_nodes)]
        capacity = {"nvidia.com/gpu": str(GPUS_PER_NODE)}
        parallel(
            nodes,
            lambda k, n: register_node(k, n, labels=L4_LABELS, capacity=capacity, taints=GPU_TAINT),
            clients,
        )
        with FakeKubelet(admin()):
            port = free_port()
            operator = start_operator(plane, workdir, port)
            wait_operator_watching(kube, port, operator)
            watcher = Watcher(admin(), LLMD_PATH)
            watcher.start()
            run = Run(plane, operator, port)
            return phases(args, run, kube, clients, watcher)
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                operator.kill()
        for client in (kube, *clients):
            client.close()
        plane.stop()


def phases(
    args: argparse.Namespace, run: Run, kube: Kube, clients: list[Kube], watcher: Watcher
) -> dict[str, Any]:
    n, limit = args.count, args.wait_seconds
    created: dict[str, float] = {}

    def create(client: Kube, index: int) -> None:
        body = manifest(index)
        client.request("POST", LLMD_PATH, body)
        created[body["metadata"]["name"]] = time.monotonic()

    profiler = start_profiler(args, run.operator.pid)
    run.mark("start", kube)
    started = time.monotonic()
    parallel(list(range(n)), create, clients)
    last_create = time.monotonic()
    status_after_last = until(watcher.status, n, last_create, limit)
    run.mark("status", kube)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    peak_during_create = peak_rss_mb(run.operator.pid)
    ready = until(watcher.ready, n, started, min(limit, READY_WAIT_SECONDS))
    time.sleep(3)  # trailing watch events
    run.mark("settled", kube)
    changed = rolled_out = None
    if not args.skip_change:
        changed, rolled_out = change_phase(run, kube, clients, watcher, n, limit)
    else:
        run.marks["changed"] = run.marks["settled"]
    time.sleep(3)
    run.mark("steady-start", kube)
    time.sleep(STEADY_SECONDS)
    run.mark("steady-end", kube)
    watcher.stop.set()

    lags = sorted(watcher.status[k] - created[k] for k in watcher.status if k in created)
    return {
        "create_requests_seconds": round(last_create - started, 2),
        "status_after_last_create_seconds": status_after_last,
        "status_after_first_create_seconds": (
            round(max(watcher.status.values()) - started, 2) if status_after_last else None
        ),
        "with_status": len(watcher.status),
        # Also when it took longer than the phase's wait (the run goes on meanwhile).
        "status_complete_after_last_create_seconds": (
            round(max(watcher.status.values()) - last_create, 2)
            if len(watcher.status) >= n
            else None
        ),
        "lags": lags,
        "all_ready_seconds": ready,
        "with_ready_replica": len(watcher.ready),
        "all_changes_reconciled_seconds": changed,
        "all_rolled_out_seconds": rolled_out,
        "operator_peak_rss_create_phase_mb": round(peak_during_create, 1),
        "operator_peak_rss_mb": round(peak_rss_mb(run.operator.pid), 1),
        "marks": run.marks,
    }


def change_phase(
    run: Run, kube: Kube, clients: list[Kube], watcher: Watcher, n: int, limit: float
) -> tuple[float | None, float | None]:
    """One spec change per LLMDeployment (maxContextLength: ConfigMap + Deployment, a rollout)."""

    def change(client: Kube, index: int) -> None:
        spec = manifest(index)["spec"]
        spec["model"]["maxContextLength"] = 2048
        path = f"{LLMD_PATH}/chat-{index:04d}"
        client.request("PATCH", path, {"spec": spec}, content_type="application/merge-patch+json")

    started = time.monotonic()
    parallel(list(range(n)), change, clients)
    changed = until(watcher.changed, n, started, limit)
    run.mark("changed", kube)
    # Bounded: 1,000 rollouts go at the controller-manager's default 20 requests/s.
    return changed, until_rolled_out(kube, NAMESPACE, n, started, min(limit, ROLLOUT_WAIT_SECONDS))


def summarize(args: argparse.Namespace, r: dict[str, Any], decide: list[float]) -> dict[str, Any]:
    n, marks = args.count, r["marks"]

    def histogram(first: str, last: str) -> dict[float, float]:
        before = report.buckets(marks[first]["operator"], RECONCILE_HISTOGRAM)
        after = report.buckets(marks[last]["operator"], RECONCILE_HISTOGRAM)
        return {le: after[le] - before.get(le, 0.0) for le in after}

    def quantile_ms(h: dict[float, float], q: float) -> float | None:
        value = report.histogram_quantile(q, h)
        return round(value * 1000, 1) if value is not None else None

    def cpu(first: str, last: str) -> dict[str, float]:
        a, b = marks[first]["cpu"], marks[last]["cpu"]
        return {p: round(b[p] - a[p], 1) for p in b}

    def requests(first: str, last: str) -> dict[str, float]:
        return report.delta(marks[last]["apiserver"], marks[first]["apiserver"])

    def server_latency(where: dict[str, str]) -> dict[str, float | None]:
        name = "apiserver_request_duration_seconds"
        after = report.buckets(marks["status"]["apiserver_samples"], name, where)
        before = report.buckets(marks["start"]["apiserver_samples"], name, where)
        h = report.bucket_delta(after, before)
        return {"count": h.get(math.inf, 0), "p50_ms": quantile_ms(h, 0.5),
                "p99_ms": quantile_ms(h, 0.99)}  # fmt: skip

    create, change = histogram("start", "status"), histogram("settled", "changed")
    steady = histogram("steady-start", "steady-end")
    create_cpu, steady_cpu = cpu("start", "status"), cpu("steady-start", "steady-end")
    within = report.fraction_within(create, 1.0)
    ours = report.sum_by(marks["steady-end"]["operator"], "llm_operator_api_requests_total",
                         ["verb"])  # fmt: skip
    p99 = report.histogram_quantile(0.99, create)
    status_s = r["status_after_last_create_seconds"]
    return {
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": bench_common.machine(
            kopf=version("kopf"),
            kubernetes=version("kubernetes"),
            kubernetes_control_plane=ENVTEST_VERSION,
            etcd=etcd_version(),
        ),
        "llmdeployments": n,
        "change_phase": not args.skip_change,
        "namespace": NAMESPACE,
        "gpu_nodes": args.gpu_nodes,
        "gpus_per_node": GPUS_PER_NODE,
        "goals": {
            "status_within_60s": status_s is not None and status_s < 60,
            "reconcile_p99_under_1s": p99 is not None and p99 < 1.0,
            "rss_under_300mb": r["operator_peak_rss_mb"] < 300,
        },
        "create_requests_seconds": r["create_requests_seconds"],
        "status_after_last_create_seconds": status_s,
        "status_after_first_create_seconds": r["status_after_first_create_seconds"],
        "status_complete_after_last_create_seconds": r["status_complete_after_last_create_seconds"],
        "wait_seconds": args.wait_seconds,
        "llmdeployments_with_status": r["with_status"],
        "create_to_status_p50_ms": report.percentile_ms(r["lags"], 50),
        "create_to_status_p99_ms": report.percentile_ms(r["lags"], 99),
        "reconciles_create_phase": int(create.get(math.inf, 0)),
        "reconcile_p50_ms": quantile_ms(create, 0.5),
        "reconcile_p99_ms": quantile_ms(create, 0.99),
        "reconcile_p99_beyond_buckets": report.beyond_buckets(0.99, create),
        "reconciles_within_1s_percent": round(within * 100, 2) if within is not None else None,
        "apiserver_latency_create_phase": {
            "APPLY (children)": server_latency({"verb": "APPLY"}),
            "PATCH llmdeployments/status": server_latency(
                {"verb": "PATCH", "resource": "llmdeployments", "subresource": "status"}
            ),
            "POST events": server_latency({"verb": "POST", "resource": "events"}),
        },
        "reconcile_histogram_create_phase": {str(k): v for k, v in sorted(create.items())},
        "all_ready_seconds": r["all_ready_seconds"],
        "llmdeployments_with_ready_replica": r["with_ready_replica"],
        "all_changes_reconciled_seconds": r["all_changes_reconciled_seconds"],
        "all_rolled_out_seconds": r["all_rolled_out_seconds"],
        "reconciles_change_phase": int(change.get(math.inf, 0)),
        "change_reconcile_p50_ms": quantile_ms(change, 0.5),
        "change_reconcile_p99_ms": quantile_ms(change, 0.99),
        "operator_peak_rss_create_phase_mb": r["operator_peak_rss_create_phase_mb"],
        "operator_peak_rss_mb": r["operator_peak_rss_mb"],
        "cpu_seconds": {
            "create": create_cpu,
            "change": cpu("settled", "changed"),
            "steady": steady_cpu,
            "total": cpu("start", "steady-end"),
        },
        "operator_cpu_ms_per_create": round(create_cpu["operator"] / n * 1000, 1),
        "apiserver_cpu_ms_per_create": round(create_cpu["kube-apiserver"] / n * 1000, 1),
        "steady_seconds": STEADY_SECONDS,
        "steady_reconciles_per_second": round(steady.get(math.inf, 0) / STEADY_SECONDS, 1),
        "steady_operator_cpu_percent": round(steady_cpu["operator"] / STEADY_SECONDS * 100, 1),
        "steady_apiserver_cpu_percent": round(
            steady_cpu["kube-apiserver"] / STEADY_SECONDS * 100, 1
        ),
        "decide_only_p50_ms": report.percentile_ms(decide, 50),
        "decide_only_p99_ms": report.percentile_ms(decide, 99),
        "operator_requests_by_verb": {k[0]: v for k, v in ours.items()},
        "requests_create_phase": requests("start", "status"),
        "requests_change_phase": requests("settled", "changed"),
        "requests_steady": requests("steady-start", "steady-end"),
    }


def etcd_version() -> str:
    out = subprocess.run([str(find_etcd()), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split()[-1] if out else "unknown"


def decide_only(count: int) -> list[float]:
    """The operator's CPU for one first reconcile (pure decide), free of any API server."""
    from llm_operator.plan import Observed, ReconcileSettings, decide

    settings, times = ReconcileSettings(), []
    for index in range(count):
        body = manifest(index)
        body["metadata"].update(uid=f"uid-{index}", generation=1)
        started = time.perf_counter()
        decide(body, Observed(), datetime.now(tz=UTC), settings)
        times.append(time.perf_counter() - started)
    return sorted(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="50 LLMDeployments, a fast check")
    parser.add_argument("--gpu-nodes", type=int, help="default: room for 2 pods per object")
    parser.add_argument("--wait-seconds", type=float, default=420, help="give up a phase after")
    parser.add_argument("--skip-change", action="store_true", help="no spec-change phase")
    parser.add_argument("--profile", type=Path, help="py-spy folded stacks of the create phase")
    parser.add_argument("--out", type=Path, help=f"where the JSON/markdown go (default {OUT})")
    args = parser.parse_args()
    if args.quick:
        args.count = 50
    args.py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if args.profile is not None and args.py_spy is None:
        parser.error("--profile needs py-spy (pip install py-spy) on PATH or in $PY_SPY")
    if args.gpu_nodes is None:
        args.gpu_nodes = math.ceil(2 * args.count / GPUS_PER_NODE)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as tmp:
        try:
            result = drive(args, Path(tmp))
        except BaseException:
            log = Path(tmp) / "operator.log"
            if log.exists():
                print(log.read_text()[-4000:], file=sys.stderr)
            raise
    out = summarize(args, result, decide_only(args.count))
    out["load_average_before"] = [round(x, 2) for x in load_before]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    # A quick check does not overwrite the committed report unless asked to.
    directory = args.out or (Path(tempfile.gettempdir()) if args.quick else OUT)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "operator_scale.json").write_text(json.dumps(out, indent=2) + "\n")
    (directory / "operator_scale.md").write_text(report.markdown(out))
    print(f"written to {directory}/operator_scale.{{json,md}}", file=sys.stderr)
    print(report.markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
