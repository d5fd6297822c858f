"""Prometheus text exposition -> one pod's PodSignals. Pure.

A tiny parser instead of prometheus_client's (only llm_operator.metrics may import that, see
.importlinter): the collector needs a handful of vLLM series from a page the server renders in
the plain text format (version 0.0.4). Samples of one name are summed over their label sets
(a server serving several model names reports one series per name).
"""

from __future__ import annotations

import math

from llm_operator.autoscale.signals import PodSignals

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
KV_CACHE_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # new name first
QUEUE_SECONDS = "vllm:request_queue_time_seconds_sum"
LATENCY_SECONDS = "vllm:e2e_request_latency_seconds_sum"


class ExpositionError(ValueError):
    """The page is not the Prometheus text format (or lacks the queue gauges)."""


def _split_sample(line: str) -> tuple[str, str]:
    """(metric name, the rest after the labels) of one sample line."""
    brace = line.find("{")
    space = line.find(" ")
    if brace == -1 or (space != -1 and space < brace):
        name, _, rest = line.partition(" ")
        return name, rest
    name, i, quoted = line[:brace], brace + 1, False
    while i < len(line):  # find the closing brace outside quoted label values
        char = line[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return name, line[i + 1 :]
        i += 1
    raise ExpositionError(f"unterminated labels: {line[:120]!r}")


def parse_samples(text: str) -> dict[str, float]:
    """Metric name -> sum of its samples' values. Comments and blank lines are skipped."""
    totals: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, rest = _split_sample(line)
        fields = rest.split()
        if not name or not fields:
            raise ExpositionError(f"no value: {line[:120]!r}")
        try:
            value = float(fields[0])
        except ValueError as exc:
            raise ExpositionError(f"bad value: {line[:120]!r}") from exc
        if math.isnan(value):
            continue
        totals[name] = totals.get(name, 0.0) + value
    return totals


def pod_signals(pod: str, text: str) -> PodSignals:
    """One pod's scrape; a page without the queue gauges is not an llm-server's: an error."""
    samples = parse_samples(text)
    if WAITING not in samples or RUNNING not in samples:
        raise ExpositionError(f"no {WAITING} / {RUNNING} in the page")
    kv_usage = next((samples[name] for name in KV_CACHE_USAGE if name in samples), 0.0)
    return PodSignals(
        name=pod,
        waiting=round(samples[WAITING]),
        running=round(samples[RUNNING]),
        prompt_tokens_total=samples.get(PROMPT_TOKENS, 0.0),
        generation_tokens_total=samples.get(GENERATION_TOKENS, 0.0),
        kv_cache_usage=kv_usage,
        queue_seconds_total=samples.get(QUEUE_SECONDS),
        latency_seconds_total=samples.get(LATENCY_SECONDS),
    )
