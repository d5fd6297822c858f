"""Operator at scale: 1,000 LLMDeployments against KMock's stateful API (not a test).

Three processes, so each one's CPU and memory are measured on their own:
- the mock API server (benchmarks/kmock_server.py: KMock's KubernetesEmulator plus what the
  integration tests add, without KMock's per-request scans of its history and store);
- a driver that creates the LLMDeployments with parallel clients, then changes every spec once,
  and polls the server until the operator is done;
- this process: the real operator (kopf + handlers.py) in a thread, as in a pod.

Reported (JSON + markdown in docs/benchmarks/): time until every LLMDeployment has its four
children and a status, and until every spec change is reconciled; per-object time from create
to status; reconcile latency p50/p99 (observe -> decide -> act, from the operator's Runtime);
API requests per reconcile and writes per child per change (counted by the server, kopf's own
requests included); CPU seconds of the operator, the mock server and the driver; the operator's
peak RSS; the machine's load average.

    .venv/bin/python benchmarks/operator_scale.py [--count 1000] [--server-cpu 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import yaml

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
NAMESPACE = "bench"
LLMD_PATH = f"/apis/inference.llmops.dev/v1alpha1/namespaces/{NAMESPACE}/llmdeployments"
CHILD_PLURALS = ("configmaps", "services", "deployments", "poddisruptionbudgets")
WATCHED = ("llmdeployments", *CHILD_PLURALS, "pods")
CLIENTS = 32  # parallel connections of the driver
STEADY_SECONDS = 30.0  # the idle window after the changes (autoscaler ticks, resyncs)


# --- the mock API server (child process) ------------------------------------------------------


def serve(port: int, ready: Any, cpu: int | None) -> None:
    from kmock_server import serve_forever

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    created: dict[str, float] = {}  # LLMDeployment name -> when created
    first_status: dict[str, float] = {}  # -> when its status was first written

    def observe(request: Any) -> None:
        if request.resource is None or request.resource.plural != "llmdeployments":
            return
        now = time.monotonic()
        if request.method.value == "POST":
            created[(request.data or {}).get("metadata", {}).get("name")] = now
        elif request.subresource == "status" and request.name not in first_status:
            first_status[request.name] = now

    def add_stats(server: Any) -> None:
        server.observers.append(observe)

        def stats(request: Any) -> dict[str, Any]:
            generation = int(request.params.get("generation", "1"))
            objects: Counter[str] = Counter()
            with_status = at_generation = 0
            for (res, _, _), obj in list(server.objects.items()):
                if obj.deleted:
                    continue
                objects[res.plural] += 1
                if res.plural == "llmdeployments" and obj.raw.get("status"):
                    with_status += 1
                    observed = obj.raw["status"].get("observedGeneration", 0)
                    at_generation += observed >= generation
            usage = resource.getrusage(resource.RUSAGE_SELF)
            lags = sorted(first_status[n] - created[n] for n in first_status if n in created)
            return {
                "requests": dict(server.counts),
                "objects": dict(objects),
                "withStatus": with_status,
                "atGeneration": at_generation,
                "watches": {k: v for k, v in server.watches.items() if v},
                "serviceSeconds": server.service_seconds,
                "cpuSeconds": usage.ru_utime + usage.ru_stime,
                "createToStatusSeconds": lags,
            }

        server["get /bench/stats"] << stats

    asyncio.run(serve_forever(port, ready, add_stats))


# --- the driver (child process) ---------------------------------------------------------------


def manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "inference.llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {
            "name": f"chat-{index:04d}",
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),  # the API server would set uid and generation
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "model": {"uri": f"hf://org/model-{index % 7}", "parameterCount": "8B"},
            "optimization": {"quantization": "int8"},
            "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
            "replicas": {"min": 1, "max": 4},
        },
    }


def drive(base: str, count: int, wait_seconds: float, go: Any, results: Any) -> None:
    cpu = time.process_time()
    out = asyncio.run(_drive(base, count, wait_seconds, go, results))
    out["driver_cpu_seconds"] = time.process_time() - cpu
    results.put(("done", out))


async def _drive(
    base: str, count: int, wait_seconds: float, go: Any, results: Any
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def stats(generation: int = 1) -> dict[str, Any]:
            async with session.get("/bench/stats", params={"generation": generation}) as r:
                return dict(await r.json())

        async def until(
            done: Any, since: float, generation: int = 1
        ) -> tuple[bool, float, dict[str, Any]]:
            while True:
                current = await stats(generation)
                if done(current):
                    return True, time.monotonic() - since, current
                if time.monotonic() - since > wait_seconds:
                    return False, time.monotonic() - since, current
                await asyncio.sleep(0.25)

        # The operator must be watching before the load arrives (an operator that starts on
        # existing objects is the resume path, not this benchmark).
        await asyncio.to_thread(go.wait)
        while set(WATCHED) - set((await stats())["watches"]):
            await asyncio.sleep(0.1)
        before = await stats()

        async def send(method: str, path: str, body: Any, content_type: str) -> None:
            headers = {"Content-Type": content_type}
            async with session.request(method, path, json=body, headers=headers) as response:
                assert response.status < 400, await response.text()

        # Phase 1: create everything at once.
        results.put(("phase", "start"))
        started = time.monotonic()
        await asyncio.gather(
            *(send("POST", LLMD_PATH, manifest(i), "application/json") for i in range(count))
        )
        created = time.monotonic() - started

        def phase_children(s: dict[str, Any]) -> bool:
            return all(s["objects"].get(p, 0) >= count for p in CHILD_PLURALS)

        def phase_status(s: dict[str, Any]) -> bool:
            return phase_children(s) and s["withStatus"] >= count

        ok_children, t_children, _ = await until(phase_children, started)
        ok_status, t_status, at_create = await until(phase_status, started)
        results.put(("phase", "created"))
        await asyncio.sleep(3)  # trailing watch events; nothing should be written now
        settled = await stats()

        # Phase 2: one spec change per LLMDeployment (maxContextLength: ConfigMap + Deployment).
        results.put(("phase", "change-start"))
        started = time.monotonic()

        def change(i: int) -> dict[str, Any]:
            spec = manifest(i)["spec"]
            spec["model"]["maxContextLength"] = 2048
            return {"metadata": {"generation": 2}, "spec": spec}

        await asyncio.gather(
            *(
                send(
                    "PATCH", f"{LLMD_PATH}/chat-{i:04d}", change(i), "application/merge-patch+json"
                )
                for i in range(count)
            )
        )
        changed = time.monotonic() - started

        def all_changed(s: dict[str, Any]) -> bool:
            return bool(s["atGeneration"] >= count)

        ok_change, t_change, at_change = await until(all_changed, started, generation=2)
        results.put(("phase", "changed"))
        await asyncio.sleep(3)
        changed_settled = await stats()

        # Phase 3: nothing changes; what does the operator cost in steady state?
        results.put(("phase", "steady-start"))
        await asyncio.sleep(STEADY_SECONDS)
        results.put(("phase", "steady-end"))
        final = await stats()
    return {
        "before": before,
        "create_requests_seconds": created,
        "children_ok": ok_children,
        "children_seconds": t_children,
        "status_ok": ok_status,
        "status_seconds": t_status,
        "at_create": at_create,
        "settled": settled,
        "change_requests_seconds": changed,
        "change_ok": ok_change,
        "change_seconds": t_change,
        "at_change": at_change,
        "changed_settled": changed_settled,
        "final": final,
    }


# --- the operator (this process) --------------------------------------------------------------


def start_operator(
    kubeconfig: Path, max_concurrent: int | None
) -> tuple[Any, threading.Event, threading.Thread]:
    import kopf

    import llm_operator.handlers  # noqa: F401  (registers the handlers)
    from llm_operator.settings import OperatorConfig

    os.environ["KUBECONFIG"] = str(kubeconfig)
    config = OperatorConfig(namespaces=(NAMESPACE,), peering=None, metrics_port=0)
    if max_concurrent is not None:
        config = replace(config, max_concurrent_reconciles=max_concurrent)
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

    thread = threading.Thread(target=run, name="operator", daemon=True)
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


def percentile_ms(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--wait-seconds", type=float, default=600, help="give up after this")
    parser.add_argument(
        "--server-cpu",
        type=int,
        help="pin the mock server to this CPU and the operator to the others",
    )
    parser.add_argument(
        "--max-concurrent-reconciles", type=int, help="the operator's flag (default: its default)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON/markdown go")
    args = parser.parse_args()
    load_before = os.getloadavg()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    # Both children are forked before the operator's threads exist.
    ready, go, results = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(port, ready, args.server_cpu), daemon=True)
    server.start()
    if not ready.wait(30):
        raise RuntimeError("the mock API server did not start")
    driver = multiprocessing.Process(
        target=drive, args=(base, args.count, args.wait_seconds, go, results), daemon=True
    )
    driver.start()
    if args.server_cpu is not None:
        others = set(range(os.cpu_count() or 1)) - {args.server_cpu}
        os.sched_setaffinity(0, others or {args.server_cpu})

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
    rss_before = rss_mb()
    memo, stop, thread = start_operator(kubeconfig, args.max_concurrent_reconciles)
    cpu_before = time.process_time()
    go.set()
    marks: dict[str, tuple[int, float]] = {}  # phase -> (reconciles so far, CPU seconds)
    while True:
        kind, value = results.get(timeout=args.wait_seconds * 3)
        if kind == "phase":
            marks[value] = (len(memo.runtime.durations), time.process_time())
        else:
            result = value
            break
    operator_cpu = time.process_time() - cpu_before
    peak_rss = rss_mb()
    ours = dict(memo.runtime.api.requests)
    durations = list(memo.runtime.durations)
    stop.set()
    thread.join(30)
    driver.join(10)
    server.kill()
    load_after = os.getloadavg()
    decide_times = decide_only(args.count)

    report = summarize(args, result, durations, marks, ours, decide_times)
    report.update(
        operator_cpu_seconds=round(operator_cpu, 1),
        operator_peak_rss_mb=round(peak_rss, 1),
        benchmark_process_rss_before_operator_mb=round(rss_before, 1),
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in load_after],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "operator_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "operator_scale.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))
    return 0


def summarize(
    args: argparse.Namespace,
    r: dict[str, Any],
    durations: list[float],
    marks: dict[str, tuple[int, float]],
    ours: dict[str, int],
    decide_times: list[float],
) -> dict[str, Any]:
    n = args.count

    def between(first: str, last: str) -> tuple[list[float], float]:
        """Reconcile durations and operator CPU seconds between two of the driver's marks."""
        (i, cpu_first), (j, cpu_last) = marks[first], marks[last]
        return sorted(durations[i:j]), cpu_last - cpu_first

    create_reqs = delta(r["settled"]["requests"], r["before"]["requests"])
    settle_reqs = delta(r["settled"]["requests"], r["at_create"]["requests"])
    change_reqs = delta(r["final"]["requests"], r["settled"]["requests"])
    create_durations, create_cpu = between("start", "created")
    change_durations, change_cpu = between("change-start", "changed")
    steady_durations, steady_cpu = between("steady-start", "steady-end")
    steady_reqs = delta(r["final"]["requests"], r["changed_settled"]["requests"])
    lags = r["final"]["createToStatusSeconds"]
    server_cpu = r["final"]["cpuSeconds"] - r["before"]["cpuSeconds"]
    server_create_cpu = r["settled"]["cpuSeconds"] - r["before"]["cpuSeconds"]
    server_change_cpu = r["changed_settled"]["cpuSeconds"] - r["settled"]["cpuSeconds"]

    def writes(reqs: dict[str, int], plural: str) -> int:
        return sum(v for k, v in reqs.items() if k.split()[1] == plural and k.split()[0] != "GET")

    def per_reconcile(reqs: dict[str, int], count: int) -> float | None:
        return round(sum(reqs.values()) / count, 2) if count else None

    return {
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": bench_common.machine(
            kopf=version("kopf"),
            kubernetes=version("kubernetes"),
            kmock=version("kmock"),
            aiohttp=version("aiohttp"),
        ),
        "llmdeployments": n,
        "server_cpu_pinned": args.server_cpu,
        "max_concurrent_reconciles": args.max_concurrent_reconciles,
        "create_requests_seconds": round(r["create_requests_seconds"], 2),
        "all_children_seconds": round(r["children_seconds"], 2) if r["children_ok"] else None,
        "all_children_and_status_seconds": (
            round(r["status_seconds"], 2) if r["status_ok"] else None
        ),
        "llmdeployments_with_status": r["at_create"]["withStatus"],
        "create_to_status_p50_ms": percentile_ms(lags, 50),
        "create_to_status_p99_ms": percentile_ms(lags, 99),
        "change_requests_seconds": round(r["change_requests_seconds"], 2),
        "all_changes_reconciled_seconds": (
            round(r["change_seconds"], 2) if r["change_ok"] else None
        ),
        "reconciles_create_phase": len(create_durations),
        "reconcile_p50_ms": percentile_ms(create_durations, 50),
        "reconcile_p99_ms": percentile_ms(create_durations, 99),
        "reconcile_max_ms": round(max(create_durations) * 1000, 1) if create_durations else None,
        "reconciles_change_phase": len(change_durations),
        "change_reconcile_p50_ms": percentile_ms(change_durations, 50),
        "change_reconcile_p99_ms": percentile_ms(change_durations, 99),
        "decide_only_p50_ms": percentile_ms(decide_times, 50),
        "decide_only_p99_ms": percentile_ms(decide_times, 99),
        "requests_create_phase": create_reqs,
        "requests_after_convergence_3s": settle_reqs,
        "requests_change_phase": change_reqs,
        "api_requests_per_llmdeployment_create": round(sum(create_reqs.values()) / n, 2),
        "api_requests_per_reconcile_create": per_reconcile(create_reqs, len(create_durations)),
        "api_requests_per_llmdeployment_change": round(sum(change_reqs.values()) / n, 2),
        "child_writes_per_child_create": {
            p: round(writes(create_reqs, p) / n, 3) for p in CHILD_PLURALS
        },
        "child_writes_per_child_change": {
            p: round(writes(change_reqs, p) / n, 3) for p in CHILD_PLURALS
        },
        "operator_requests_by_verb": ours,
        "operator_cpu_seconds_create_phase": round(create_cpu, 1),
        "operator_cpu_seconds_change_phase": round(change_cpu, 1),
        "steady_seconds": STEADY_SECONDS,
        "steady_reconciles_per_second": round(len(steady_durations) / STEADY_SECONDS, 1),
        "steady_operator_cpu_percent_of_a_core": round(steady_cpu / STEADY_SECONDS * 100, 1),
        "steady_requests": steady_reqs,
        "server_cpu_seconds": round(server_cpu, 1),
        "server_cpu_ms_per_llmdeployment_create": round(server_create_cpu / n * 1000, 1),
        "server_cpu_ms_per_llmdeployment_change": round(server_change_cpu / n * 1000, 1),
        "operator_cpu_ms_per_llmdeployment_create": round(create_cpu / n * 1000, 1),
        "operator_cpu_ms_per_llmdeployment_change": round(change_cpu / n * 1000, 1),
        "server_service_seconds": round(r["final"]["serviceSeconds"], 1),
        "driver_cpu_seconds": round(r["driver_cpu_seconds"], 1),
        "objects_at_end": r["final"]["objects"],
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]

    def seconds(value: float | None) -> str:
        return f"{value} s" if value is not None else "not reached"

    rows = [
        ("creating them (driver, 32 clients)", f"{r['create_requests_seconds']} s", ""),
        ("all LLMDeployments have their 4 children", seconds(r["all_children_seconds"]), ""),
        (
            "... and a status",
            seconds(r["all_children_and_status_seconds"]),
            "≤ 60 s",
        ),
        (
            "create → status per object p50 / p99",
            f"{r['create_to_status_p50_ms']} / {r['create_to_status_p99_ms']} ms",
            "",
        ),
        ("reconcile p50 (create phase)", f"{r['reconcile_p50_ms']} ms", ""),
        ("reconcile p99 (create phase)", f"{r['reconcile_p99_ms']} ms", "< 1 s"),
        ("all spec changes reconciled", seconds(r["all_changes_reconciled_seconds"]), ""),
        (
            "reconcile p50 / p99 (change phase)",
            f"{r['change_reconcile_p50_ms']} / {r['change_reconcile_p99_ms']} ms",
            "",
        ),
        (
            "child writes per child, create",
            ", ".join(f"{k} {v}" for k, v in r["child_writes_per_child_create"].items()),
            "≤ 1 per change",
        ),
        (
            "child writes per child, spec change",
            ", ".join(f"{k} {v}" for k, v in r["child_writes_per_child_change"].items()),
            "≤ 1 per change",
        ),
        (
            "API requests per LLMDeployment (all, kopf's included): create / change",
            f"{r['api_requests_per_llmdeployment_create']} / "
            f"{r['api_requests_per_llmdeployment_change']}",
            "",
        ),
        ("API requests per reconcile (create)", str(r["api_requests_per_reconcile_create"]), ""),
        ("operator peak RSS", f"{r['operator_peak_rss_mb']} MB", "< 300 MB"),
        (
            "CPU, whole run: operator / mock server / driver",
            f"{r['operator_cpu_seconds']} / {r['server_cpu_seconds']} / "
            f"{r['driver_cpu_seconds']} s",
            "",
        ),
        (
            "CPU per LLMDeployment, create: operator / mock server",
            f"{r['operator_cpu_ms_per_llmdeployment_create']} / "
            f"{r['server_cpu_ms_per_llmdeployment_create']} ms",
            "",
        ),
        (
            "CPU per LLMDeployment, spec change: operator / mock server",
            f"{r['operator_cpu_ms_per_llmdeployment_change']} / "
            f"{r['server_cpu_ms_per_llmdeployment_change']} ms",
            "",
        ),
        (
            f"steady state ({r['steady_seconds']:.0f} s, nothing changes): reconciles/s, "
            "operator CPU",
            f"{r['steady_reconciles_per_second']}/s, "
            f"{r['steady_operator_cpu_percent_of_a_core']} % of a core",
            "",
        ),
        (
            "decide() alone p50 / p99",
            f"{r['decide_only_p50_ms']} / {r['decide_only_p99_ms']} ms",
            "",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    phases = (
        "requests_create_phase",
        "requests_after_convergence_3s",
        "requests_change_phase",
        "steady_requests",
    )
    keys = sorted({k for p in phases for k in r[p]})
    requests = "\n".join(
        f"| {k} | " + " | ".join(str(r[p].get(k, 0)) for p in phases) + " |" for k in keys
    )
    pinned = (
        f"mock server pinned to CPU {r['server_cpu_pinned']}, operator and driver on the others"
        if r["server_cpu_pinned"] is not None
        else "no CPU pinning"
    )
    return f"""# Operator scale benchmark

`benchmarks/operator_scale.py --count {r["llmdeployments"]}`: the real operator (kopf +
handlers.py) against KMock's stateful API (`benchmarks/kmock_server.py`, own process), driven by
a third process. {r["date"]}; {m["cpu"]}, {m["cores"]} cores ({pinned}); load average
{r["load_average_before"]} before, {r["load_average_after"]} after; Python {m["python"]},
kopf {m["kopf"]}, kubernetes {m["kubernetes"]}, kmock {m["kmock"]}.

| measure | result | goal |
| --- | --- | --- |
{table}

Requests seen by the server (kopf's, ours and the driver's):

| method resource | create phase | 3 s after | spec change | steady state |
| --- | --- | --- | --- | --- |
{requests}
"""


if __name__ == "__main__":
    sys.exit(main())
