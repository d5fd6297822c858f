"""Operator at scale: 1,000 LLMDeployments against KMock's stateful API (not a test).

The mock API server runs in a child process (KMock's KubernetesEmulator, plus uid and
resourceVersion bumps as in tests/integration/operator), so the operator's own CPU and peak
RSS are measured on their own. The operator is the real one (kopf + handlers.py) in this
process. Reported: time until every LLMDeployment has its four children and a status, the
reconcile latency p50/p99 (observe -> decide -> act, from the operator's Runtime), API
requests per reconcile (counted by the server, kopf's own included), writes per child, and the
operator's peak RSS. Writes JSON and a markdown table to docs/benchmarks/.

    .venv/bin/python benchmarks/operator_scale.py [--count 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
NAMESPACE = "bench"
LLMD_PATH = f"/apis/inference.llmops.dev/v1alpha1/namespaces/{NAMESPACE}/llmdeployments"
CHILD_PLURALS = ("configmaps", "services", "deployments", "poddisruptionbudgets")


def serve(port: int, ready: Any) -> None:
    """Child process: the mock API server until killed."""
    import jsonpatch
    import kmock

    class ApiServer(kmock.KubernetesEmulator):  # same emulation as the integration tests
        _version = 1

        async def _handle(self, request: Any) -> Any:
            if request.resource is not None and request.action is not None:
                action = str(request.action).rsplit(".", 1)[-1].upper()
                if action in {"CREATE", "UPDATE"}:
                    type(self)._version += 1
                    if isinstance(request.data, dict):
                        meta = request.data.setdefault("metadata", {})
                        meta["resourceVersion"] = str(self._version)
                        if action == "CREATE":
                            meta.setdefault("uid", str(uuid.uuid4()))
                    elif isinstance(request.data, list):
                        request.data.append(
                            {
                                "op": "add",
                                "path": "/metadata/resourceVersion",
                                "value": str(self._version),
                            }
                        )
            try:
                return await super()._handle(request)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc

    def stats(_: Any) -> dict[str, Any]:
        methods: Counter[str] = Counter()
        for request in server:
            if request.resource is not None:
                plural = request.resource.plural or "?"
                methods[f"{request.method.value} {plural}"] += 1
        objects: Counter[str] = Counter()
        for (res, _, _), obj in list(server.objects.items()):
            if not obj.deleted:
                objects[res.plural] += 1
        with_status = sum(
            1
            for (res, _, _), obj in list(server.objects.items())
            if res.plural == "llmdeployments" and not obj.deleted and obj.raw.get("status")
        )
        return {"requests": dict(methods), "objects": dict(objects), "withStatus": with_status}

    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    resources = {
        "inference.llmops.dev/v1alpha1/llmdeployments": ("LLMDeployment", {"status"}),
        "apps/v1/deployments": ("Deployment", {"status"}),
        "v1/configmaps": ("ConfigMap", set()),
        "v1/services": ("Service", set()),
        "v1/pods": ("Pod", set()),
        "v1/events": ("Event", set()),
        "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", set()),
        "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", set()),
    }

    async def main() -> None:
        nonlocal server
        async with ApiServer() as server, kmock.Server(server, port=port):
            for name, (kind, subresources) in resources.items():
                server.resources[name] = kmock.ResourceInfo(
                    kind=kind, namespaced=True, verbs=verbs, subresources=subresources
                )
            server.resources["v1/namespaces"] = kmock.ResourceInfo(
                kind="Namespace", namespaced=False, verbs=verbs
            )
            server["get /bench/stats"] << stats
            ready.set()
            await asyncio.Event().wait()

    server: Any = None
    asyncio.run(main())


def manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "inference.llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {
            "name": f"chat-{index:04d}",
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "generation": 1,
        },
        "spec": {
            "model": {"uri": f"hf://org/model-{index % 7}", "parameterCount": "8B"},
            "optimization": {"quantization": "int8"},
            "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
            "replicas": {"min": 1, "max": 4},
        },
    }


def start_operator(kubeconfig: Path) -> tuple[Any, threading.Event, threading.Thread]:
    import kopf

    import llm_operator.handlers  # noqa: F401
    from llm_operator.settings import OperatorConfig

    os.environ["KUBECONFIG"] = str(kubeconfig)
    config = OperatorConfig(namespaces=(NAMESPACE,), peering=None, metrics_port=0)
    memo = kopf.Memo(config=config)
    stop, ready = threading.Event(), threading.Event()

    def run() -> None:
        asyncio.run(
            kopf.operator(
                standalone=True,
                namespaces=[NAMESPACE],
                memo=memo,
                stop_flag=stop,
                ready_flag=ready,
            )
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(60)
    return memo, stop, thread


def decide_only(count: int) -> list[float]:
    """The operator's own CPU per first reconcile (pure decide), free of the mock's speed."""
    from llm_operator.plan import Observed, ReconcileSettings, decide

    settings, times = ReconcileSettings(), []
    for index in range(count):
        started = time.perf_counter()
        decide(manifest(index), Observed(), datetime.now(tz=UTC), settings)
        times.append(time.perf_counter() - started)
    return sorted(times)


async def drive(base: str, count: int, memo: Any, wait_seconds: float) -> dict[str, Any]:
    async with aiohttp.ClientSession(base) as session:
        limit = asyncio.Semaphore(32)

        async def create(index: int) -> None:
            async with limit, session.post(LLMD_PATH, json=manifest(index)) as response:
                assert response.status < 400, await response.text()

        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(count)))
        created = time.monotonic() - started
        stats: dict[str, Any] = {}
        converged = False
        while time.monotonic() - started < wait_seconds:
            await asyncio.sleep(1.0)
            async with session.get("/bench/stats") as response:
                stats = await response.json()
            objects = stats["objects"]
            if (
                all(objects.get(p, 0) >= count for p in CHILD_PLURALS)
                and stats["withStatus"] >= count
            ):
                converged = True
                break
        elapsed = time.monotonic() - started
        await asyncio.sleep(3)  # let trailing watch events settle, then count again
        async with session.get("/bench/stats") as response:
            final = await response.json()
    runtime = memo.runtime
    durations = sorted(runtime.durations)
    return {
        "created_seconds": created,
        "converged": converged,
        "converged_seconds": elapsed,
        "stats_at_convergence": stats,
        "final": final,
        "reconciles": len(durations),
        "durations": durations,
    }


def percentile_ms(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--wait-seconds", type=float, default=600, help="give up after this")
    args = parser.parse_args()
    decide_times = decide_only(args.count)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, ready), daemon=True)
    server.start()
    ready.wait(30)
    base = f"http://127.0.0.1:{port}"
    kubeconfig = Path(tempfile.mkdtemp()) / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": base}}],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "bench"}}],
                "current-context": "kmock",
            }
        )
    )
    memo, stop, thread = start_operator(kubeconfig)
    cpu_before = time.process_time()
    result = asyncio.run(drive(base, args.count, memo, args.wait_seconds))
    operator_cpu = time.process_time() - cpu_before
    stop.set()
    thread.join(30)
    server.kill()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    requests = result["final"]["requests"]
    reconciles = result["reconciles"]
    writes_children = sum(
        n
        for k, n in requests.items()
        if k.split()[0] in {"PATCH", "POST"} and k.split()[1] in CHILD_PLURALS
    )
    applies = sum(
        n for k, n in requests.items() if k.split()[0] == "PATCH" and k.split()[1] in CHILD_PLURALS
    )
    total = sum(requests.values())
    durations = result["durations"]
    report = {
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "kopf": version("kopf"),
            "kubernetes": version("kubernetes"),
            "kmock": version("kmock"),
        },
        "llmdeployments": args.count,
        "create_requests_seconds": round(result["created_seconds"], 2),
        "converged": result["converged"],
        "all_children_and_status_seconds": round(result["converged_seconds"], 2),
        "llmdeployments_with_status": result["final"]["withStatus"],
        "reconciles": reconciles,
        "reconcile_p50_ms": percentile_ms(durations, 50),
        "reconcile_p99_ms": percentile_ms(durations, 99),
        "reconcile_max_ms": round(max(durations) * 1000, 1) if durations else None,
        "api_requests_total": total,
        "api_requests_per_reconcile": round(total / reconciles, 2) if reconciles else None,
        "decide_only_p50_ms": percentile_ms(decide_times, 50),
        "decide_only_p99_ms": percentile_ms(decide_times, 99),
        "api_requests_by_verb_and_resource": dict(sorted(requests.items())),
        "child_applies_per_child": round(applies / (args.count * len(CHILD_PLURALS)), 3),
        "child_writes_per_child_incl_kmock_create_fallback": round(
            writes_children / (args.count * len(CHILD_PLURALS)), 3
        ),
        "operator_cpu_seconds": round(operator_cpu, 1),
        "operator_peak_rss_mb": round(peak_rss_mb, 1),
        "objects_at_end": result["final"]["objects"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "operator_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "operator_scale.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))
    return 0


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    done = (
        f"{r['all_children_and_status_seconds']} s"
        if r["converged"]
        else f"not reached: {r['llmdeployments_with_status']} of {r['llmdeployments']} after "
        f"{r['all_children_and_status_seconds']} s"
    )
    goal = [
        ("all LLMDeployments have children + status", done, "≤ 60 s"),
        ("reconcile p50", f"{r['reconcile_p50_ms']} ms", ""),
        ("reconcile p99", f"{r['reconcile_p99_ms']} ms", "< 1 s"),
        (
            "decide() alone p50 / p99",
            f"{r['decide_only_p50_ms']} / {r['decide_only_p99_ms']} ms",
            "",
        ),
        (
            "API requests per reconcile (all, kopf's included)",
            str(r["api_requests_per_reconcile"]),
            "",
        ),
        ("child applies per child", str(r["child_applies_per_child"]), "≤ 1 per change"),
        ("operator peak RSS", f"{r['operator_peak_rss_mb']} MB", "< 300 MB"),
    ]
    rows = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in goal)
    by_verb = "\n".join(f"| {k} | {v} |" for k, v in r["api_requests_by_verb_and_resource"].items())
    return f"""# Operator scale benchmark

`benchmarks/operator_scale.py`: {r["llmdeployments"]} LLMDeployments created at once against
KMock's stateful API (in a child process); the real operator (kopf + handlers) in the
benchmark process. Date {r["date"]}; {m["platform"]}, {m["cpus"]} CPUs, Python {m["python"]},
kopf {m["kopf"]}, kubernetes {m["kubernetes"]}, kmock {m["kmock"]}.

| measure | result | goal |
| --- | --- | --- |
{rows}

Reconciles: {r["reconciles"]} (create handlers plus daemon re-evaluations woken by child
events). Operator CPU: {r["operator_cpu_seconds"]} s. Creating the {r["llmdeployments"]} objects
took {r["create_requests_seconds"]} s of that time.

Reconcile latency is measured around observe -> decide -> act, so it includes waiting for the
mock API server; `decide()` alone is the operator's own CPU per (first) reconcile, measured
on the same {r["llmdeployments"]} manifests before the run.

Caveat: KMock does not create objects on server-side apply, so each first apply is a PATCH
answered 404 followed by a POST (`child_writes_per_child_incl_kmock_create_fallback`:
{r["child_writes_per_child_incl_kmock_create_fallback"]}); a real API server creates on the
apply itself. KMock scans all stored objects on every request, so the server side slows down
as objects accumulate; it runs in its own process and is not counted in the operator's CPU or
RSS.

| requests by method and resource | count |
| --- | --- |
{by_verb}
"""


if __name__ == "__main__":
    sys.exit(main())
