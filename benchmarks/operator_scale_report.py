"""The operator scale benchmark's arithmetic and report (pure: no processes, no network).

Prometheus text from the operator's and the API server's /metrics is parsed into samples;
phases are differences between two snapshots. Reconcile quantiles come from the operator's
own histogram, interpolated within a bucket as PromQL's histogram_quantile does, so they are
the figures a user's Grafana would show (bucket edges include 1 s, so "p99 < 1 s" is exact).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if "{" in head:
            name, _, labels = head.partition("{")
            pairs = frozenset(_LABEL.findall(labels.rstrip("}")))
        else:
            name, pairs = head, frozenset()
        try:
            samples[(name, pairs)] = float(value)
        except ValueError:
            continue  # a timestamp or an exemplar we do not read
    return samples


def sum_by(samples: Samples, name: str, keys: Iterable[str]) -> dict[tuple[str, ...], float]:
    keys = tuple(keys)
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (sample, labels), value in samples.items():
        if sample == name:
            found = dict(labels)
            out[tuple(found.get(k, "") for k in keys)] += value
    return dict(out)


def delta(after: Mapping[Any, float], before: Mapping[Any, float]) -> dict[Any, float]:
    """Counter increase per key (keys with no increase dropped)."""
    out = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return {k: v for k, v in out.items() if v}


def buckets(
    samples: Samples, name: str, where: Mapping[str, str] | None = None
) -> dict[float, float]:
    """Cumulative bucket counts of a histogram by upper bound (le), summed over the series
    whose labels match `where`."""
    out: dict[float, float] = defaultdict(float)
    wanted = (where or {}).items()
    for (sample, labels), value in samples.items():
        if sample == f"{name}_bucket":
            found = dict(labels)
            if all(found.get(k, "") == v for k, v in wanted):
                out[float(found["le"])] += value
    return dict(out)


def bucket_delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


def histogram_quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """PromQL's histogram_quantile: linear within the bucket holding rank q * total."""
    bounds = sorted(cumulative)
    total = cumulative.get(math.inf, 0.0)
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper in bounds:
        count = cumulative[upper]
        if count >= rank:
            if math.isinf(upper):
                return lower  # PromQL answers the highest finite bound
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, count
    return None


def beyond_buckets(q: float, cumulative: Mapping[float, float]) -> bool:
    """Whether the q-quantile lies above the highest finite bucket (then only a bound)."""
    finite = [le for le in cumulative if not math.isinf(le)]
    total = cumulative.get(math.inf, 0.0)
    return bool(finite and total and cumulative[max(finite)] < q * total)


def fraction_within(cumulative: Mapping[float, float], bound: float) -> float | None:
    total = cumulative.get(math.inf, 0.0)
    return cumulative.get(bound, 0.0) / total if total else None


def percentile_ms(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def request_table(samples: Samples) -> dict[str, float]:
    """The API server's requests by "VERB resource[/subresource]" (all clients)."""
    counts = sum_by(samples, "apiserver_request_total", ["verb", "resource", "subresource"])
    return {
        f"{verb} {resource}{'/' + sub if sub else ''}": value
        for (verb, resource, sub), value in counts.items()
    }


def markdown(r: dict[str, Any]) -> str:
    m, g = r["machine"], r["goals"]

    def seconds(value: float | None, change: bool = False) -> str:
        if change and not r["change_phase"]:
            return "skipped (--skip-change)"
        return f"{value} s" if value is not None else "not reached"

    def status_time() -> str:
        within, complete = (
            r["status_after_last_create_seconds"],
            r.get("status_complete_after_last_create_seconds"),
        )
        if within is not None:
            return seconds(within)
        later = f" (all by {complete} s)" if complete is not None else ""
        return f"not within the {r.get('wait_seconds')} s wait{later}"

    def mark(ok: bool | None) -> str:
        return {True: "met", False: "**missed**", None: "n/a"}[ok]

    cpu = r["cpu_seconds"]
    rows = [
        ("creating them (driver, 32 clients)", f"{r['create_requests_seconds']} s", "", ""),
        (
            "all have a status, after the last create",
            status_time(),
            "< 60 s",
            mark(g["status_within_60s"]),
        ),
        (
            "create → status per object p50 / p99",
            f"{r['create_to_status_p50_ms']} / {r['create_to_status_p99_ms']} ms",
            "",
            "",
        ),
        (
            "reconcile p50 / p99 (create phase, operator's histogram)",
            f"{r['reconcile_p50_ms']} / {'> ' if r.get('reconcile_p99_beyond_buckets') else ''}"
            f"{r['reconcile_p99_ms']} ms "
            f"({r['reconciles_create_phase']} reconciles, "
            f"{r['reconciles_within_1s_percent']} % ≤ 1 s)",
            "p99 < 1 s",
            mark(g["reconcile_p99_under_1s"]),
        ),
        (
            "API server latency in the create phase, p50 / p99: "
            + ", ".join(r["apiserver_latency_create_phase"]),
            ", ".join(
                f"{v['p50_ms']} / {v['p99_ms']} ms"
                for v in r["apiserver_latency_create_phase"].values()
            ),
            "",
            "",
        ),
        (
            "all have a ready replica (pods scheduled, fake kubelet)",
            seconds(r["all_ready_seconds"]),
            "",
            "",
        ),
        ("all spec changes reconciled", seconds(r["all_changes_reconciled_seconds"], True), "", ""),
        (
            "... and rolled out (new pods Ready, old gone)",
            seconds(r["all_rolled_out_seconds"], True),
            "",
            "",
        ),
        (
            "reconcile p50 / p99 (change phase)",
            f"{r['change_reconcile_p50_ms']} / {r['change_reconcile_p99_ms']} ms"
            if r.get("change_phase", True)
            else "skipped",
            "",
            "",
        ),
        (
            "operator peak RSS (VmHWM)",
            f"{r['operator_peak_rss_mb']} MB",
            "< 300 MB",
            mark(g["rss_under_300mb"]),
        ),
        (
            "CPU, create phase: operator / kube-apiserver / etcd / controller-manager / scheduler",
            " / ".join(f"{cpu['create'][p]}" for p in PROCESSES) + " s",
            "",
            "",
        ),
        (
            "CPU, whole run: operator / kube-apiserver / etcd / controller-manager / scheduler "
            "/ driver",
            " / ".join(f"{cpu['total'][p]}" for p in (*PROCESSES, "driver")) + " s",
            "",
            "",
        ),
        (
            "CPU per LLMDeployment, create phase: operator / kube-apiserver",
            f"{r['operator_cpu_ms_per_create']} / {r['apiserver_cpu_ms_per_create']} ms",
            "",
            "",
        ),
        (
            f"steady state ({r['steady_seconds']:.0f} s, nothing changes): reconciles/s, "
            "operator / kube-apiserver CPU",
            f"{r['steady_reconciles_per_second']}/s, {r['steady_operator_cpu_percent']} % / "
            f"{r['steady_apiserver_cpu_percent']} % of a core",
            "",
            "",
        ),
        (
            "decide() alone p50 / p99",
            f"{r['decide_only_p50_ms']} / {r['decide_only_p99_ms']} ms",
            "",
            "",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    phases = ("requests_create_phase", "requests_change_phase", "requests_steady")
    keys = sorted({k for p in phases for k in r[p]}, key=lambda k: (k.split()[1], k))
    requests = "\n".join(
        f"| {k} | " + " | ".join(str(int(r[p].get(k, 0))) for p in phases) + " |" for k in keys
    )
    ours = ", ".join(f"{k} {int(v)}" for k, v in sorted(r["operator_requests_by_verb"].items()))
    skip = "" if r.get("change_phase", True) else " --skip-change"
    return f"""# Operator scale benchmark

`benchmarks/operator_scale.py --count {r["llmdeployments"]}{skip}`: the operator as a subprocess
(`python -m llm_operator -n {r["namespace"]} --standalone`, admin kubeconfig) against a real
control plane on loopback (etcd {m["etcd"]}, kube-apiserver / controller-manager / scheduler
{m["kubernetes_control_plane"]}), {r["gpu_nodes"]} fake GPU Nodes ({r["gpus_per_node"]} L4 each)
and the fake kubelet moving bound pods to Ready. {r["date"]}; {m["cpu"]}, {m["cores"]}
cores; load average {r["load_average_before"]} before, {r["load_average_after"]} after;
Python {m["python"]}, kopf {m["kopf"]}, kubernetes client {m["kubernetes"]}.

| measure | result | goal | |
| --- | --- | --- | --- |
{table}

The operator's own API requests (llm_operator_api_requests, all phases): {ours}.

Requests the API server served in each phase (all clients: operator, kopf, driver,
controller-manager, scheduler, fake kubelet; `apiserver_request_total`):

| verb resource | create phase | spec change | steady |
| --- | --- | --- | --- |
{requests}
"""


PROCESSES = ("operator", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler")
