"""Autoscaler replay: a real request trace against simulated GPU replicas, four scaling policies.

A deterministic (seeded) discrete-event simulation. Requests of a trace (TIMESTAMP,
ContextTokens, GeneratedTokens; default ../shared/traces/azure-llm-2023-code.csv) arrive at a
gateway that sends each to the ready replica with the shortest prefill backlog. Each replica is
a capacity model (defaults: one L40S serving an 8B model in int8, see `Capacity`):

- prefill is serialized per replica at `prefill_tokens_per_s` (chunked prefill), plus a fixed
  per-request overhead; time to first token = queueing + own prefill;
- decoding runs alongside, one token per step, a step taking `decode_step_s` plus
  `decode_step_per_seq_s` per running sequence (memory-bound weights read + attention);
- at most `max_concurrency` sequences run; more wait in the replica's queue.

A control loop runs every `--interval` seconds (10 s, like the operator): it "scrapes" each
ready replica (waiting, running, token counters, KV use; each scrape fails with probability
`--scrape-failure-rate`, seeded) and asks a policy for the replica count. New pods are ready
after `--start-delay` seconds (90 s: pulling and loading weights) and cost money from creation;
removed pods stop taking requests, finish what they hold (drain), then stop costing.

Policies (each swept over its main knobs, the same floors and scale-down windows for every
dynamic policy, and each also pinned at min = max; SWEEP_TEXT lists the grids):

- ours:   llm_operator.autoscale.policy.decide, the function the operator runs; knobs:
          targetQueueDepth, targetRunningPerReplica, the prefill target (prompt tokens/s per
          replica), the load window (last tick, or the mean or the 90th percentile of 10
          minutes), the load signal (peak or sampled), the scale-down window;
- static: a fixed replica count; knob: the count ("static at the peak" = the smallest count
          reaching the SLO level);
- hpa:    Kubernetes HPA on GPU utilization (DCGM duty cycle: share of the interval a replica
          had work), HPA's algorithm: 10 % tolerance, unready pods count as 0 % on scale-up,
          missing metrics as 100 % on scale-down / 0 % on scale-up, no scale-up window,
          max(4 pods, 100 %) up per step; knobs: target utilization, scale-down window;
- kubeai: KubeAI's autoscaler: a 10-minute moving average of in-flight requests (counted at
          the gateway), divided by targetRequests, a lower count applied after
          scaleDownDelaySeconds; knobs: the target, the delay.

Reported per policy configuration: GPU-hours, dollars (catalog price of the accelerator), SLO
attainment (share of requests with TTFT under `--slo-ttft`, 2 s), p50/p99 TTFT and scale
events. Figures: load vs replicas over time (one panel per policy) and dollars vs SLO
attainment for every configuration of every policy. Writes docs/benchmarks/autoscale_replay.
{json,md} and autoscale_replay_{frontier,timeline}.png.

    python benchmarks/autoscale_replay.py          # ~34,000 runs: ~22 min on 2 idle cores
    python benchmarks/autoscale_replay.py --quick  # a small sweep, written to /tmp
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import heapq
import json
import math
import os
import random
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)
from llm_operator import __version__ as operator_version
from llm_operator.autoscale import (
    DeploymentSignals,
    PodSignals,
    PolicyConfig,
    PolicyState,
    decide,
)
from llm_operator.autoscale.policy import DEFAULT_RUNNING_PER_REPLICA_DIVISOR
from llm_operator.catalog import default_catalog
from llm_operator.cost import replica_dollars_per_hour

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = ROOT.parent / "shared" / "traces" / "azure-llm-2023-code.csv"
MAX_REPLICAS = 40


# --- workload and capacity --------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    arrival: float
    prompt: int
    output: int


def load_trace(path: Path, time_scale: float) -> list[Request]:
    """Requests in arrival order, t=0 at the first; time_scale < 1 compresses time."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stamp = datetime.datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f")
            rows.append((stamp, int(row["ContextTokens"]), max(1, int(row["GeneratedTokens"]))))
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    return [Request((s - t0).total_seconds() * time_scale, p, g) for s, p, g in rows]


@dataclass(frozen=True)
class Capacity:
    """One replica. Defaults: an L40S (48 GB, ~181 dense fp16 TFLOPS, 864 GB/s) serving an 8B
    model with int8 weights (~8.5 GB; weight-only, so matmuls run at fp16 rate). Prefill: ~16
    GFLOP/token at ~50 % MFU gives ~5,600 tokens/s, rounded down to 5,500. A decode step reads
    the weights once (~10 ms at 864 GB/s) plus overheads: 14 ms, and ~0.15 ms per running
    sequence. 64 concurrent sequences (the server's default). (An L4 at ~3,500 prefill
    tokens/s cannot give the trace's 7,000-token prompts a first token within 2 s at all: 5.5 %
    of requests would miss the SLO whatever the policy; pass --accelerator L4 --prefill 3500
    to see it.)"""

    prefill_tokens_per_s: float = 5500.0
    prefill_overhead_s: float = 0.02
    decode_step_s: float = 0.014
    decode_step_per_seq_s: float = 0.00015
    max_concurrency: int = 64
    kv_tokens: int = 200_000  # KV cache capacity in tokens (for the kv-usage signal only)
    source: str = "defaults: L40S, 8B with int8 weights (estimated from datasheet figures)"


def calibrated(path: Path) -> Capacity:
    """A Capacity measured by benchmarks/server_throughput.py (our engine, its machine).

    The benchmark sends a burst at t=0: the last first token (ttft p99) comes when all
    prompts are prefilled, so prefill rate ~ prompt tokens / ttft_p99; the median
    inter-token latency is a decode step at that batch size.
    """
    report = json.loads(path.read_text())
    ours = next(r for r in report["results"] if r["name"] == "ours")
    work = report["workload"]
    prompt_tokens = work["requests"] * sum(work["prompt_range"]) / 2
    batch = min(work["requests"], 64)
    step = float(ours["itl_p50_s"])
    return Capacity(
        prefill_tokens_per_s=prompt_tokens / float(ours["ttft_p99_s"]),
        decode_step_s=step * 0.5,
        decode_step_per_seq_s=step * 0.5 / batch,
        max_concurrency=batch,
        source=f"calibrated from {path.name} ({report['date']}, {report['machine']['cpu']})",
    )


# --- replicas -----------------------------------------------------------------------------------


@dataclass
class Replica:
    serial: int
    created: float
    ready_at: float
    removed: float | None = None  # when it stopped taking requests
    prefill_free_at: float = 0.0
    slots: list[float] = field(default_factory=list)  # end times of running sequences (heap)
    jobs: list[tuple[float, float, Request]] = field(default_factory=list)  # (start, end, req)
    last_end: float = 0.0
    prompt_done: float = 0.0
    generated_done: float = 0.0
    queue_left: list[tuple[float, float]] = field(default_factory=list)  # (when, queued s), heap
    queue_seconds: float = 0.0  # the vllm:request_queue_time_seconds_sum counter
    prefill_left: list[tuple[float, int]] = field(default_factory=list)  # (first token, prompt)
    latency_seconds: float = 0.0  # the vllm:e2e_request_latency_seconds_sum counter

    def backlog(self, now: float) -> float:
        return max(self.prefill_free_at, now)

    def serve(self, req: Request, now: float, cap: Capacity) -> float:
        """Queue `req` (arrived at `now`); returns its time to first token."""
        start = max(now, self.prefill_free_at)
        while self.slots and self.slots[0] <= start:
            heapq.heappop(self.slots)
        while len(self.slots) >= cap.max_concurrency:
            start = max(start, heapq.heappop(self.slots))
        first = start + cap.prefill_overhead_s + req.prompt / cap.prefill_tokens_per_s
        self.prefill_free_at = first
        batch = 1 + sum(1 for end in self.slots if end > first)
        end = first + (req.output - 1) * (cap.decode_step_s + cap.decode_step_per_seq_s * batch)
        heapq.heappush(self.slots, end)
        heapq.heappush(self.queue_left, (start, start - req.arrival))
        heapq.heappush(self.prefill_left, (first, req.prompt))
        self.jobs.append((start, end, req))
        self.last_end = max(self.last_end, end)
        return first - req.arrival

    def observe(self, now: float, window: float, cap: Capacity) -> tuple[int, int, float, float]:
        """(waiting, running, kv use, busy share of the last `window` s); forgets old jobs."""
        while self.queue_left and self.queue_left[0][0] <= now:
            self.queue_seconds += heapq.heappop(self.queue_left)[1]
        while self.prefill_left and self.prefill_left[0][0] <= now:
            self.prompt_done += heapq.heappop(self.prefill_left)[1]  # counted once prefilled
        waiting = running = kv = 0
        busy: list[tuple[float, float]] = []
        keep = []
        for start, end, req in self.jobs:
            if end <= now:
                self.generated_done += req.output
                self.latency_seconds += end - req.arrival
            else:
                keep.append((start, end, req))
                if start > now:
                    waiting += 1
                else:
                    running += 1
                    kv += req.prompt + req.output
            if end > now - window and start < now:
                busy.append((max(start, now - window), min(end, now)))
        self.jobs = keep
        covered, reach = 0.0, now - window
        for lo, hi in sorted(busy):
            if hi > reach:
                covered += hi - max(lo, reach)
                reach = hi
        return waiting, running, min(1.0, kv / cap.kv_tokens), covered / window


# --- policies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """What a policy may look at: scrapes of ready pods, starting pods, gateway in-flight."""

    now: float
    current: int
    starting: int
    pods: tuple[PodSignals, ...]
    busy: tuple[float | None, ...]  # duty cycle per ready pod (None: scrape failed)
    in_flight: int  # counted at the gateway (waiting + running everywhere, never lost)


class Policy(Protocol):
    def __call__(self, tick: Tick) -> int: ...


class Ours:
    def __init__(self, floor: int, ceiling: int, knobs: dict[str, Any]):
        self.config = PolicyConfig(
            min_replicas=floor,
            max_replicas=ceiling,
            target_queue_depth=knobs.get("target_queue", 4.0),
            target_running_per_replica=knobs.get("target_running", DEFAULT_RUNNING),
            target_prompt_tokens_per_replica_s=knobs.get("target_prompt_tokens_s"),
            load_average_window_s=knobs.get("average_s", 0.0),
            load_percentile=knobs.get("percentile"),
            scale_up_stabilization_s=0.0,
            scale_down_stabilization_s=knobs.get("down_window_s", 300.0),
            load_signal=knobs.get("load_signal", "peak"),
        )
        self.state = PolicyState()

    def __call__(self, tick: Tick) -> int:
        signals = DeploymentSignals(tick.current, tick.pods, tick.starting)
        decision = decide(signals, self.config, self.state, tick.now)
        self.state = decision.state
        return decision.desired


class Static:
    def __init__(self, replicas: int):
        self.replicas = replicas

    def __call__(self, tick: Tick) -> int:
        return self.replicas


class Hpa:
    """The HPA controller's algorithm on a per-pod utilization metric (duty cycle)."""

    def __init__(
        self, floor: int, target: float, down_s: float = 300.0, ceiling: int = MAX_REPLICAS
    ):
        self.floor, self.target, self.down_s, self.ceiling = floor, target, down_s, ceiling
        self.history: deque[tuple[float, int]] = deque()

    def _raw(self, tick: Tick) -> int:
        known = [b for b in tick.busy if b is not None]
        missing = len(tick.busy) - len(known)
        if not known:
            return tick.current
        ratio = sum(known) / (len(known) * self.target)
        if abs(ratio - 1) <= 0.1:
            return tick.current
        if ratio > 1:  # scale-up: missing and unready pods count as idle
            pods = len(tick.busy) + tick.starting
            ratio = sum(known) / (pods * self.target)
            return tick.current if ratio <= 1.1 else math.ceil(ratio * pods)
        ratio = (sum(known) + missing) / (len(tick.busy) * self.target)  # missing: 100 %
        return tick.current if ratio >= 0.9 else math.ceil(ratio * len(tick.busy))

    def __call__(self, tick: Tick) -> int:
        raw = self._raw(tick)
        self.history.append((tick.now, raw))
        while self.history and tick.now - self.history[0][0] > self.down_s:
            self.history.popleft()
        down = max(r for _, r in self.history)  # no scale-up window: up = raw
        desired = raw if raw > tick.current else min(down, tick.current)
        desired = min(desired, tick.current + max(4, tick.current))
        return max(self.floor, min(self.ceiling, desired))


class KubeAi:
    """KubeAI's model autoscaler: in-flight requests (counted at its proxy) averaged over a
    moving window (`timeWindow`, 10 minutes), divided by `targetRequests`, rounded up; a lower
    count waits `scaleDownDelaySeconds` (default 30 s) before it is applied."""

    def __init__(
        self,
        floor: int,
        target: float,
        window_s: float = 600.0,
        interval: float = 10.0,
        down_delay_s: float = 30.0,
        ceiling: int = MAX_REPLICAS,
    ):
        self.floor, self.target, self.ceiling = floor, target, ceiling
        self.down_delay_s = down_delay_s
        self.samples: deque[int] = deque(maxlen=max(1, round(window_s / interval)))
        self.history: deque[tuple[float, int]] = deque()

    def __call__(self, tick: Tick) -> int:
        self.samples.append(tick.in_flight)
        average = sum(self.samples) / len(self.samples)
        raw = max(self.floor, min(self.ceiling, math.ceil(average / self.target - 1e-9)))
        self.history.append((tick.now, raw))
        while tick.now - self.history[0][0] > self.down_delay_s:
            self.history.popleft()
        if raw >= tick.current:
            return raw
        return min(tick.current, max(r for _, r in self.history))


# --- the simulation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    capacity: Capacity
    dollars_per_replica_hour: float
    start_delay_s: float = 90.0
    interval_s: float = 10.0
    slo_ttft_s: float = 2.0
    scrape_failure_rate: float = 0.01
    seed: int = 0


@dataclass
class Run:
    policy: str
    knobs: dict[str, float]
    gpu_hours: float
    dollars: float
    slo_attainment: float
    ttft_p50_s: float
    ttft_p99_s: float
    scale_events: int
    peak_replicas: int
    timeline: list[tuple[float, int, int, int]] = field(repr=False, default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def simulate(
    trace: list[Request],
    policy: Policy,
    initial: int,
    sim: SimConfig,
    name: str,
    knobs: dict[str, Any],
) -> Run:
    rng = random.Random(sim.seed)
    cap = sim.capacity
    pods = [Replica(serial=n, created=0.0, ready_at=0.0) for n in range(initial)]
    active = list(pods)  # not removed (ready or starting)
    pending: deque[Request] = deque()  # at the gateway while no replica is ready
    ttfts: list[float] = []
    timeline: list[tuple[float, int, int, int]] = []
    horizon = trace[-1].arrival + 60.0
    events = 0
    arrivals_this_tick = 0
    i = 0
    now = 0.0
    while now <= horizon:
        now += sim.interval_s
        ready = [p for p in active if p.ready_at <= now]
        while i < len(trace) and trace[i].arrival <= now:
            req = trace[i]
            i += 1
            arrivals_this_tick += 1
            up = [p for p in active if p.ready_at <= req.arrival]
            if not up:
                pending.append(req)
                continue
            best = min(up, key=lambda p: p.backlog(req.arrival))
            ttfts.append(best.serve(req, req.arrival, cap))
        if pending and ready:
            first = min(ready, key=lambda p: p.ready_at)
            for req in pending:
                ttfts.append(first.serve(req, max(first.ready_at, req.arrival), cap) + 0.0)
            pending.clear()
        scraped: list[PodSignals] = []
        busy: list[float | None] = []
        in_flight = len(pending)
        for pod in ready:
            waiting, running, kv, duty = pod.observe(now, sim.interval_s, cap)
            in_flight += waiting + running
            if rng.random() < sim.scrape_failure_rate:
                scraped.append(PodSignals.failed(f"pod-{pod.serial}"))
                busy.append(None)
                continue
            scraped.append(
                PodSignals(
                    name=f"pod-{pod.serial}",
                    waiting=waiting,
                    running=running,
                    prompt_tokens_total=pod.prompt_done,
                    generation_tokens_total=pod.generated_done,
                    kv_cache_usage=kv,
                    queue_seconds_total=pod.queue_seconds,
                    latency_seconds_total=pod.latency_seconds,
                )
            )
            busy.append(duty)
        starting = len(active) - len(ready)
        tick = Tick(now, len(active), starting, tuple(scraped), tuple(busy), in_flight)
        desired = policy(tick)
        if desired != len(active):
            events += 1
        for _ in range(desired - len(active)):
            pod = Replica(serial=len(pods), created=now, ready_at=now + sim.start_delay_s)
            pods.append(pod)
            active.append(pod)
        for _ in range(len(active) - desired):
            # Like a Deployment: not-ready pods go first (newest), then the least loaded.
            waiting_pods = [p for p in active if p.ready_at > now]
            victim = (
                max(waiting_pods, key=lambda p: p.created)
                if waiting_pods
                else min(active, key=lambda p: p.backlog(now))
            )
            victim.removed = now
            active.remove(victim)
        timeline.append(
            (now, arrivals_this_tick, len(active), len([p for p in active if p.ready_at <= now]))
        )
        arrivals_this_tick = 0
    end = max(horizon, max((p.last_end for p in pods), default=0.0))
    pod_seconds = 0.0
    for pod in pods:
        stop = end if pod.removed is None else max(pod.removed, min(pod.last_end, end))
        pod_seconds += max(0.0, stop - pod.created)
    gpu_hours = pod_seconds / 3600
    assert len(ttfts) == len(trace), (len(ttfts), len(trace))
    return Run(
        policy=name,
        knobs=knobs,
        gpu_hours=gpu_hours,
        dollars=gpu_hours * sim.dollars_per_replica_hour,
        slo_attainment=sum(1 for t in ttfts if t < sim.slo_ttft_s) / len(ttfts),
        ttft_p50_s=percentile(ttfts, 0.5),
        ttft_p99_s=percentile(ttfts, 0.99),
        scale_events=events,
        peak_replicas=max(r for _, _, r, _ in timeline),
        timeline=timeline,
    )


# --- sweeps, frontier, report ---------------------------------------------------------------------

Factory = Callable[[], Policy]


FLOORS = range(1, 17)  # replicas.min / minReplicas: the same for every dynamic policy
DOWN_WINDOWS = (300.0, 450.0, 600.0)  # scale-down windows / delays: the same for each
# targetQueueDepth: doubling steps from 1 to 64, so that the knob covers the levels between
# "scale on a short queue" and "queue a whole batch first" (KubeAI's target gets 12 values).
OURS_QUEUE = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# The load window: (seconds, percentile): the last tick; the mean of 10 minutes (like KubeAI);
# the 90th percentile of 10 minutes.
OURS_LOAD = ((0.0, None), (600.0, None), (600.0, 90))
HPA_TARGETS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
# Our prefill target as a share of a replica's prefill rate: the same shares as the HPA's
# duty-cycle targets (both measure how busy prefill keeps a replica), so neither gets a
# denser grid on the comparable knob.
OURS_PREFILL_SHARES = (None, *HPA_TARGETS)
# targetRunningPerReplica: the operator's default when unset (the replica's 64 concurrent
# sequences / 8 = 8) with every prefill share, and doubling steps around it with every third
# share (off, 0.5, 0.65, 0.8, 0.95), so the sweep stays near 30,000 runs. KubeAI's in-flight
# targets of 2-4 per replica are where running 8 alone lost the low-range frontier points.
DEFAULT_RUNNING = Capacity().max_concurrency / DEFAULT_RUNNING_PER_REPLICA_DIVISOR
OURS_RUNNING = (DEFAULT_RUNNING / 4, DEFAULT_RUNNING / 2, DEFAULT_RUNNING, DEFAULT_RUNNING * 2)

KUBEAI_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0)
KUBEAI_DELAYS = (30.0, *DOWN_WINDOWS)  # 30 s is KubeAI's default scaleDownDelaySeconds


def ours_targets(quick: bool) -> list[tuple[float, float | None]]:
    """(running target, prefill share) pairs of our sweep."""
    running = OURS_RUNNING[1:3] if quick else OURS_RUNNING
    pairs = []
    for target in running:
        every_share = target == DEFAULT_RUNNING and not quick
        for share in OURS_PREFILL_SHARES if every_share else OURS_PREFILL_SHARES[::3]:
            pairs.append((target, share))
    return pairs


SWEEP_TEXT = {
    "ours": "replicas.min (floor) 1-16 x targetQueueDepth {1, 2, 4, 8, 16, 32, 64} x "
    "(targetRunningPerReplica 8 x prefill target {off, or the HPA's 12 utilization targets as "
    "shares of a replica's prefill rate} prompt tokens/s per replica, and "
    "targetRunningPerReplica {2, 4, 16} x prefill target {off, 0.5, 0.65, 0.8, 0.95}) x load "
    "window {last tick, mean of 600 s, 90th percentile of 600 s} x scale-down window {300, "
    "450, 600} s; no scale-up window; with the windowed loads and no prefill target also "
    "loadSignal sampled (the gauges alone); plus min = max (pinned) for each floor",
    "static": "replicas 1-30",
    "hpa": "minReplicas (floor) 1-16 x target utilization {0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, "
    "0.75, 0.8, 0.85, 0.9, 0.95} x scale-down stabilization window {300, 450, 600} s; plus "
    "min = max (pinned) for each floor",
    "kubeai": "minReplicas (floor) 1-16 x targetRequests (in flight per replica) {0.1, 0.2, "
    "0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 4, 8} x scaleDownDelaySeconds {30, 300, 450, 600}; "
    "10-minute moving average; plus min = max (pinned) for each floor",
    "ours-gauge-only": "the ours configurations with running target 8, the last-tick load and "
    "a 300 s window, without the counters (an ablation, never a baseline)",
}


def sweep(
    quick: bool, interval: float, prefill_rate: float
) -> list[tuple[str, dict[str, float], int, Factory]]:
    """(policy, knobs, initial replicas, factory) for every configuration of every policy.

    Every dynamic policy gets the same replica floors, the same scale-down windows, and also
    runs pinned (min = max = floor: a static count) so that where not scaling is best no policy
    is handicapped. Knob values are denser for a baseline's single target than for each of our
    two targets.
    """
    floors = [1, 4, 8, 12] if quick else list(FLOORS)
    windows = DOWN_WINDOWS[:1] if quick else DOWN_WINDOWS
    out: list[tuple[str, dict[str, float], int, Factory]] = []
    for n in range(1, 31, 3 if quick else 1):
        out.append(("static", {"replicas": n}, n, _factory(Static, n)))
    for floor in floors:
        pinned: dict[str, float] = {"floor": floor, "max": floor}
        out.append(("ours", pinned, floor, _factory(Ours, floor, floor, {})))
        out.append(("hpa", pinned, floor, _factory(Hpa, floor, 0.6, 300.0, floor)))
        out.append(
            ("kubeai", pinned, floor, _factory(KubeAi, floor, 1.0, 600.0, interval, 30.0, floor))
        )
        for down in windows:
            for average, percentile in OURS_LOAD:
                for running, share in ours_targets(quick):
                    prefill = None if share is None else round(share * prefill_rate)
                    for queue in OURS_QUEUE[::2] if quick else OURS_QUEUE:
                        knobs: dict[str, Any] = {"floor": floor, "target_queue": queue}
                        knobs["target_running"] = running
                        if prefill is not None:
                            knobs["target_prompt_tokens_s"] = prefill
                        knobs["average_s"] = average
                        if percentile is not None:
                            knobs["percentile"] = percentile
                        knobs["down_window_s"] = down
                        out.append(
                            ("ours", knobs, floor, _factory(Ours, floor, MAX_REPLICAS, knobs))
                        )
                        sampled = {**knobs, "load_signal": "sampled"}
                        factory = _factory(Ours, floor, MAX_REPLICAS, sampled)
                        if average and share is None:  # KubeAI's view, and our windows
                            out.append(("ours", sampled, floor, factory))
                        ablated = down == DOWN_WINDOWS[0] and running == DEFAULT_RUNNING
                        if ablated and not average:  # ablation: no counters
                            out.append(("ours-gauge-only", sampled, floor, factory))
            for target in HPA_TARGETS[::3] if quick else HPA_TARGETS:
                knobs = {"floor": floor, "target_util": target, "down_window_s": down}
                out.append(("hpa", knobs, floor, _factory(Hpa, floor, target, down)))
        for delay in KUBEAI_DELAYS[:2] if quick else KUBEAI_DELAYS:
            for target in KUBEAI_TARGETS[::3] if quick else KUBEAI_TARGETS:
                knobs = {"floor": floor, "target_in_flight": target, "down_delay_s": delay}
                factory = _factory(KubeAi, floor, target, 600.0, interval, delay)
                out.append(("kubeai", knobs, floor, factory))
    return out


def knob_text(knobs: dict[str, Any]) -> str:
    """`floor=6, target_queue=2, load_signal=sampled`: numbers in their shortest form."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in knobs.items()
    )


def _factory(cls: Any, *args: Any) -> Factory:
    return functools.partial(cls, *args)  # picklable, for the process pool


_WORKER: dict[str, Any] = {}  # each pool worker's trace and SimConfig, sent once


def _init_worker(trace: list[Request], sim: SimConfig) -> None:
    _WORKER.update(trace=trace, sim=sim)


def _run_one(job: tuple[str, dict[str, Any], int, Factory]) -> Run:
    name, knobs, initial, factory = job
    return simulate(_WORKER["trace"], factory(), initial, _WORKER["sim"], name, knobs)


def pareto(runs: Iterable[Run]) -> list[Run]:
    """Configurations no other one beats on both dollars and SLO attainment, cheapest first."""
    front: list[Run] = []
    for run in sorted(runs, key=lambda r: (r.dollars, -r.slo_attainment)):
        if not front or run.slo_attainment > front[-1].slo_attainment:
            front.append(run)
    return front


def cheapest_at(runs: Iterable[Run], level: float) -> Run | None:
    able = [r for r in runs if r.slo_attainment >= level - 1e-12]
    return min(able, key=lambda r: r.dollars) if able else None


def dominance(ours: list[Run], baseline: list[Run], low: float = 0.0) -> list[dict[str, Any]]:
    """Baseline frontier points (SLO >= low) where ours needs more dollars for that level."""
    misses = []
    for point in pareto(baseline):
        if point.slo_attainment < low:
            continue
        mine = cheapest_at(ours, point.slo_attainment)
        if mine is None or mine.dollars > point.dollars + 1e-9:
            misses.append(
                {
                    "baseline": point.policy,
                    "knobs": point.knobs,
                    "slo_attainment": point.slo_attainment,
                    "baseline_dollars": point.dollars,
                    "ours_dollars": None if mine is None else mine.dollars,
                }
            )
    return misses


COLORS = {
    "ours": "tab:green",
    "static": "tab:gray",
    "hpa": "tab:orange",
    "kubeai": "tab:blue",
    "ours-gauge-only": "yellowgreen",
}
POLICIES = ("ours", "static", "hpa", "kubeai")
SHOWN = (*POLICIES, "ours-gauge-only")  # the ablation is plotted and tabled, never a baseline
OPERATING_RANGE = 0.9  # SLO attainment from which a service is worth running


def plot_frontier(runs: list[Run], level: float, path: Path) -> None:
    """Left: the whole range; right: the operating range (SLO attainment >= 90 %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=90)
    operating = [r for r in runs if r.slo_attainment >= OPERATING_RANGE]
    for ax, zoom in zip(axes, (False, True), strict=True):
        for name in SHOWN:
            mine = [r for r in runs if r.policy == name]
            ablation = name not in POLICIES
            ax.scatter(
                [r.dollars for r in mine],
                [100 * r.slo_attainment for r in mine],
                s=0 if ablation else 5,
                alpha=0.25,
                linewidths=0,
                color=COLORS[name],
            )
            front = pareto(mine)
            ax.step(
                [r.dollars for r in front],
                [100 * r.slo_attainment for r in front],
                where="post",
                color=COLORS[name],
                label=f"{name} (frontier)",
                linewidth=1.2 if ablation else 1.8,
                linestyle="--" if ablation else "-",
            )
        ax.axhline(100 * level, color="black", linewidth=0.6, linestyle=":")
        ax.set_xlabel("dollars for the replay")
        ax.grid(alpha=0.3)
        if zoom and operating:
            ax.set_ylim(100 * OPERATING_RANGE, 100.2)
            ax.set_xlim(0.95 * min(r.dollars for r in operating), 40)
            ax.set_title(f"operating range (>= {100 * OPERATING_RANGE:g} %)", fontsize=9)
        else:
            ax.set_ylim(0, 100.5)
            ax.set_ylabel("SLO attainment (% of requests with TTFT under the SLO)")
            ax.set_title("every configuration (dots) and each policy's frontier", fontsize=9)
            ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_timelines(picked: dict[str, Run], interval: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(picked), 1, figsize=(8, 1.9 * len(picked)), dpi=90, sharex=True)
    top = max(r for run in picked.values() for _, _, r, _ in run.timeline) + 1
    for ax, (name, run) in zip(axes, picked.items(), strict=True):
        minutes = [t / 60 for t, _, _, _ in run.timeline]
        ax.fill_between(
            minutes,
            [a / interval for _, a, _, _ in run.timeline],
            step="pre",
            color="lightsteelblue",
            label="arrivals (req/s)",
        )
        ax.set_ylabel("req/s", fontsize=8)
        twin = ax.twinx()
        twin.step(
            minutes,
            [r for _, _, r, _ in run.timeline],
            color=COLORS[name],
            label="replicas (incl. starting)",
            linewidth=1.4,
        )
        twin.step(
            minutes,
            [r for _, _, _, r in run.timeline],
            color=COLORS[name],
            linestyle=":",
            label="ready",
            linewidth=1.0,
        )
        twin.set_ylabel("replicas", fontsize=8)
        twin.set_ylim(0, top)  # the same scale in every panel
        knobs = knob_text(run.knobs)
        ax.set_title(
            f"{name} ({knobs}): ${run.dollars:.2f}, SLO {100 * run.slo_attainment:.2f} %",
            fontsize=8,
        )
        if ax is axes[0]:
            twin.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine() -> dict[str, Any]:
    import matplotlib

    return bench_common.machine(llm_operator=operator_version, matplotlib=matplotlib.__version__)


def summarize(runs: list[Run], level: float) -> dict[str, Any]:
    ours = [r for r in runs if r.policy == "ours"]
    static_at_level = cheapest_at([r for r in runs if r.policy == "static"], level)
    ours_at_level = cheapest_at(ours, level)
    misses = {b: dominance(ours, [r for r in runs if r.policy == b]) for b in POLICIES[1:]}
    operating = {
        b: dominance(ours, [r for r in runs if r.policy == b], OPERATING_RANGE)
        for b in POLICIES[1:]
    }
    return {
        "level": level,
        "static_at_level": None if static_at_level is None else _row(static_at_level),
        "ours_at_level": None if ours_at_level is None else _row(ours_at_level),
        "ours_vs_static_fraction": (
            ours_at_level.dollars / static_at_level.dollars
            if ours_at_level and static_at_level
            else None
        ),
        "cheapest_at_level": {
            name: (lambda r: None if r is None else _row(r))(
                cheapest_at([r for r in runs if r.policy == name], level)
            )
            for name in SHOWN
        },
        "dominates": {b: not m for b, m in misses.items()},
        "dominance_misses": misses,
        "operating_range": OPERATING_RANGE,
        "dominates_in_operating_range": {b: not m for b, m in operating.items()},
        "operating_range_misses": operating,
    }


RUN_COLUMNS = [
    "policy",
    "knobs",
    "gpu_hours",
    "dollars",
    "slo_attainment",
    "ttft_p50_s",
    "ttft_p99_s",
    "scale_events",
    "peak_replicas",
]


def _compact(run: Run) -> list[Any]:
    row = _row(run)
    return [round(v, 5) if isinstance(v, float) else v for v in (row[c] for c in RUN_COLUMNS)]


def _row(run: Run) -> dict[str, Any]:
    out = asdict(run)
    out.pop("timeline")
    return out


FRONTIER_ONLY = (
    "each policy's frontier: enough to check the dominance verdict; --all-runs for every "
    "configuration"
)


def kept_runs(runs: list[Run], all_runs: bool) -> list[Run]:
    """The runs the JSON keeps, in sweep order: all, or each policy's frontier points."""
    if all_runs:
        return runs
    front = {id(r) for name in SHOWN for r in pareto(r for r in runs if r.policy == name)}
    return [r for r in runs if id(r) in front]


def report_json(report: dict[str, Any]) -> str:
    """The report as JSON, indented, with one line per run (a readable diff)."""
    head = json.dumps({**report, "runs": []}, indent=2)
    rows = ",\n".join(f"    {json.dumps(row)}" for row in report["runs"])
    return head.replace('"runs": []', f'"runs": [\n{rows}\n  ]') + "\n"


def write_report(out_dir: Path, report: dict[str, Any], runs: list[Run], interval: float) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "autoscale_replay.json").write_text(report_json(report))
    summary = report["summary"]
    level = summary["level"]
    picked = {}
    for name in SHOWN:
        mine = [r for r in runs if r.policy == name]
        if mine:
            picked[name] = cheapest_at(mine, level) or max(mine, key=lambda r: r.slo_attainment)
    plot_timelines(
        {k: v for k, v in picked.items() if k in POLICIES},
        interval,
        out_dir / "autoscale_replay_timeline.png",
    )
    plot_frontier(runs, level, out_dir / "autoscale_replay_frontier.png")
    setup, mach = report["setup"], report["machine"]
    pct = f"{100 * level:g} %"
    lines = [
        "# Autoscaler replay",
        "",
        f"{report['date']} · {mach['cpu']} · {mach['cores']} cores · Python {mach['python']} · "
        f"llm-operator {mach['llm_operator']} · matplotlib {mach['matplotlib']}",
        "",
        f"Trace: `{setup['trace']}` ({setup['requests']} requests over "
        f"{setup['trace_seconds']:.0f} s). **Time compression: {setup['time_compression']}.** "
        f"Replica: {setup['capacity']['source']}; prefill "
        f"{setup['capacity']['prefill_tokens_per_s']:.0f} tokens/s, decode step "
        f"{1000 * setup['capacity']['decode_step_s']:.1f} ms + "
        f"{1000 * setup['capacity']['decode_step_per_seq_s']:.2f} ms per sequence, "
        f"{setup['capacity']['max_concurrency']} concurrent sequences; "
        f"${setup['dollars_per_replica_hour']:.2f}/h per replica ({setup['accelerator']} "
        f"on-demand, catalog). Pod start delay {setup['start_delay_s']:g} s, control loop every "
        f"{setup['interval_s']:g} s, scrape failure rate {setup['scrape_failure_rate']:g}, "
        f"seed {setup['seed']}. SLO: TTFT under {setup['slo_ttft_s']:g} s. "
        f"{report['configurations']} configurations simulated.",
        "",
        "Capacity model and calibration: a replica prefills prompts one after another at the "
        "prefill rate (plus 20 ms per request), so time to first token is its wait in the "
        "replica's prefill queue plus its own prefill; decoding runs alongside in steps whose "
        "time grows with the batch. `--calibrate docs/benchmarks/server_throughput.json` "
        "derives the prefill rate and decode step from our server benchmark instead (its "
        "burst's last first token and median inter-token latency); that benchmark ran a small "
        "model on a 2-core CPU, so a GPU replay uses the datasheet-derived defaults, and "
        "`--prefill` overrides the rate.",
        "",
        f"## Cheapest configuration of each policy reaching {pct} SLO attainment",
        "",
        "| policy | knobs | GPU-hours | dollars | SLO attainment | TTFT p50 | TTFT p99 "
        "| scale events | peak replicas |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in picked.items():
        reached = run.slo_attainment >= level
        knobs = knob_text(run.knobs)
        lines.append(
            f"| {name}{'' if reached else ' (best reached)'} | {knobs} | {run.gpu_hours:.2f} | "
            f"{run.dollars:.2f} | {100 * run.slo_attainment:.2f} % | {run.ttft_p50_s:.2f} s | "
            f"{run.ttft_p99_s:.2f} s | {run.scale_events} | {run.peak_replicas} |"
        )
    fraction = summary["ours_vs_static_fraction"]
    lines += [
        "",
        f"**Ours at {pct} SLO: "
        + ("not reached" if fraction is None else f"{100 * fraction:.1f} % of the dollars")
        + f" of static provisioning at the peak** (the smallest static count reaching {pct}).",
        "",
        "## Sweeps",
        "",
        "Every dynamic policy gets the same floors and scale-down windows (KubeAI: delays), "
        "and each also runs pinned at min = max (a static count), so that where not scaling is "
        "best no policy is handicapped. Pod start delay, control loop, scrapes and capacity "
        "model are the same for all.",
        "",
        "| policy | configurations | knobs swept |",
        "|---|---:|---|",
        *[
            f"| {name} | {report['configurations_per_policy'].get(name, 0)} | "
            f"{SWEEP_TEXT[name] if not report['setup']['quick'] else 'quick: a subset'} |"
            for name in SHOWN
        ],
        "",
        "## Does our frontier dominate?",
        "",
        "For every point on a baseline's frontier (dollars, SLO attainment), the cheapest "
        "configuration of ours reaching that SLO level must cost no more.",
        "",
    ]
    lines.append(
        f"Over the whole range (every frontier point, down to 1 static replica) and over the "
        f"operating range (baseline points at {100 * summary['operating_range']:g} % SLO "
        "attainment or more):"
    )
    lines.append("")
    for name, ok in summary["dominates_in_operating_range"].items():
        misses = summary["operating_range_misses"][name]
        worst = max(
            (
                m["ours_dollars"] / m["baseline_dollars"] - 1
                for m in misses
                if m["ours_dollars"] is not None
            ),
            default=0.0,
        )
        unreached = sum(1 for m in misses if m["ours_dollars"] is None)
        lines.append(
            f"- vs {name}, whole range: {'yes' if summary['dominates'][name] else 'no'} "
            f"({len(summary['dominance_misses'][name])} frontier point(s) cheaper than ours); "
            f"operating range: {'yes' if ok else 'no'}"
            + (
                ""
                if ok
                else f" ({len(misses)} point(s); ours costs up to {100 * worst:.1f} % "
                f"more there{f', {unreached} level(s) ours never reaches' if unreached else ''})"
            )
        )
    lines += ["", "Operating-range misses in detail:", ""]
    for name in summary["dominates"]:
        misses = summary["operating_range_misses"][name]
        ok = not misses
        detail = (
            ""
            if ok
            else ": "
            + "; ".join(
                f"{name} {100 * m['slo_attainment']:.2f} % at ${m['baseline_dollars']:.2f}, ours "
                + ("never" if m["ours_dollars"] is None else f"${m['ours_dollars']:.2f}")
                for m in misses
            )
        )
        lines.append(f"- vs {name}: {'none' if ok else len(misses)}{detail}")
    lines += [
        "",
        "![dollars vs SLO attainment](autoscale_replay_frontier.png)",
        "",
        "![load vs replicas](autoscale_replay_timeline.png)",
        "",
        "## Frontier points per policy",
        "",
        "| policy | knobs | dollars | SLO attainment | TTFT p99 | scale events |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in SHOWN:
        for run in pareto([r for r in runs if r.policy == name]):
            knobs = knob_text(run.knobs)
            lines.append(
                f"| {name} | {knobs} | {run.dollars:.2f} | {100 * run.slo_attainment:.2f} % | "
                f"{run.ttft_p99_s:.2f} s | {run.scale_events} |"
            )
    lines += ["", 'How to read this: docs/autoscaling.md, "The replay".', ""]
    (out_dir / "autoscale_replay.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply arrival times (0.5 = compress twice); 1 = real time",
    )
    parser.add_argument(
        "--calibrate",
        type=Path,
        default=None,
        help="a server_throughput.json to take the capacity model from",
    )
    parser.add_argument("--accelerator", default="L40S", help="catalog entry for the price")
    parser.add_argument(
        "--prefill", type=float, default=None, help="override the capacity model's prefill tokens/s"
    )
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
        "--all-runs",
        action="store_true",
        help="put every configuration's run in the JSON (~7 MB), not only the frontiers",
    )
    args = parser.parse_args()

    trace = load_trace(args.trace, args.time_scale)
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
    # The trace goes to each worker once, not with every job (pickling it was a quarter of
    # the run time).
    init = (trace, sim)
    with ProcessPoolExecutor(args.workers, initializer=_init_worker, initargs=init) as pool:
        runs = list(pool.map(_run_one, configs, chunksize=8))
    compression = (
        "none (real time, 1.0x)"
        if args.time_scale == 1.0
        else f"arrival times multiplied by {args.time_scale:g}"
    )
    report = {
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
        "configurations": len(runs),
        "configurations_per_policy": {
            name: sum(1 for r in runs if r.policy == name) for name in SHOWN
        },
        "summary": summarize(runs, args.slo_level),
        "run_columns": RUN_COLUMNS,
        "runs_kept": "every configuration" if args.all_runs else FRONTIER_ONLY,
        "runs": [_compact(r) for r in kept_runs(runs, args.all_runs)],
    }
    out_dir = args.out or (
        Path(tempfile.gettempdir()) / "autoscale_replay"
        if args.quick
        else ROOT / "docs" / "benchmarks"
    )
    write_report(out_dir, report, runs, args.interval)
    print((out_dir / "autoscale_replay.md").read_text())


if __name__ == "__main__":
    main()
