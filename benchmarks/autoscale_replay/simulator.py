"""The replay's simulator: simulated GPU replicas serving a trace under a scaling policy.

A deterministic (seeded) discrete-event simulation. Requests arrive at a gateway that sends
each to the ready replica with the shortest prefill backlog. Each replica is a capacity model
(defaults: one L40S serving an 8B model in int8, see `Capacity`):

- prefill is serialized per replica at `prefill_tokens_per_s` (chunked prefill), plus a fixed
  per-request overhead; time to first token = queueing + own prefill;
- decoding runs alongside, one token per step, a step taking `decode_step_s` plus
  `decode_step_per_seq_s` per running sequence (memory-bound weights read + attention);
- at most `max_concurrency` sequences run; more wait in the replica's queue.

A control loop runs every `interval_s` (10 s, like the operator): it "scrapes" each ready
replica (waiting, running, token counters, KV use; each scrape fails with probability
`scrape_failure_rate`, seeded) and asks a policy for the replica count. New pods are ready
after `start_delay_s` (90 s: pulling and loading weights) and cost money from creation;
removed pods stop taking requests, finish what they hold (drain), then stop costing.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llm_operator.autoscale import PodSignals

from .trace import Request


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
