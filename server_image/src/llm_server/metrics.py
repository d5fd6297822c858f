"""Prometheus metrics: vLLM's names (so gateways, KEDA recipes and dashboards work unchanged)
plus `llm_server_*` ones where vLLM has none. The only module that imports prometheus_client.

Engine gauges and counters are read from `EngineStats` at scrape time, so they are never stale;
per-request latencies are observed by the HTTP layer as tokens stream out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from llm_server.cache.response_cache import ResponseCacheStats
from llm_server.engine.request import EngineStats

# `*_created` series double the scrape size and no dashboard reads them (vLLM disables them too).
disable_created_metrics()  # type: ignore[no-untyped-call]

# vLLM's bucket boundaries, so histograms line up with existing dashboards.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
TOKEN_COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)

StatsSource = Callable[[], EngineStats | None]
ResponseCacheStatsSource = Callable[[], ResponseCacheStats]


class EngineStatsCollector(Collector):
    """Reads the engine's snapshot on every scrape; zeros until the engine is loaded, so every
    series exists from the first scrape (KEDA and alerts dislike absent series)."""

    def __init__(self, model_name: str, stats_source: StatsSource) -> None:
        self._model_name = model_name
        self._stats_source = stats_source

    def collect(self) -> Iterator[Metric]:
        stats = self._stats_source() or EngineStats(0, 0, 0.0, 0, 0, 0, 0, 0)
        labels = ["model_name"]
        values = [self._model_name]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            return family

        yield gauge(
            "vllm:num_requests_waiting", "Requests waiting to be scheduled.", stats.num_waiting
        )
        yield gauge(
            "vllm:num_requests_running", "Requests in the running batch.", stats.num_running
        )
        yield gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage, 1 means full.", stats.kv_cache_usage
        )
        # The pre-v0.10 name, still read by some Gateway API Inference Extension releases.
        yield gauge("vllm:gpu_cache_usage_perc", "Deprecated alias.", stats.kv_cache_usage)
        yield counter(
            "vllm:num_preemptions", "Preemptions by recompute.", stats.num_preemptions_total
        )
        yield counter("vllm:prompt_tokens", "Prefill tokens processed.", stats.prompt_tokens_total)
        yield counter("vllm:generation_tokens", "Generated tokens.", stats.generation_tokens_total)
        # In tokens, counted when a request is admitted (again after a preemption), as in vLLM.
        yield counter(
            "vllm:prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache.",
            stats.prefix_cache_queries_total,
        )
        yield counter(
            "vllm:prefix_cache_hits",
            "Prompt tokens found in the prefix cache.",
            stats.prefix_cache_hits_total,
        )
        yield gauge("llm_server_batch_size", "Sequences in the last step.", stats.last_batch_size)
        yield gauge("llm_server_batch_tokens", "Tokens in the last step.", stats.last_batch_tokens)


class ResponseCacheCollector(Collector):
    """The exact-response cache's counters and size, read from the cache at scrape time."""

    def __init__(self, model_name: str, source: ResponseCacheStatsSource) -> None:
        self._model_name = model_name
        self._source = source

    def collect(self) -> Iterator[Metric]:
        stats = self._source()
        name = "llm_server_response_cache"
        values = [self._model_name]
        for suffix, doc, value in (
            ("hits", "Requests answered from the response cache.", stats.hits),
            ("misses", "Cacheable requests not found in the response cache.", stats.misses),
        ):
            family = CounterMetricFamily(f"{name}_{suffix}", doc, labels=["model_name"])
            family.add_metric(values, value)
            yield family
        evictions = CounterMetricFamily(
            f"{name}_evictions",
            "Entries dropped, by reason: expired, max_entries or max_bytes.",
            labels=["model_name", "reason"],
        )
        for reason, count in sorted(stats.evictions.items()):
            evictions.add_metric([*values, reason], count)
        yield evictions
        for suffix, doc, value in (
            ("bytes", "Memory the cached responses account for.", stats.bytes),
            ("entries", "Responses in the cache.", stats.entries),
        ):
            gauge = GaugeMetricFamily(f"{name}_{suffix}", doc, labels=["model_name"])
            gauge.add_metric(values, value)
            yield gauge


class ServerMetrics:
    """Every metric of one server process, in a registry of its own (tests build several)."""

    def __init__(
        self,
        model_name: str,
        info: Mapping[str, str],
        stats_source: StatsSource,
        response_cache_stats: ResponseCacheStatsSource | None = None,
    ) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry()
        self.registry.register(EngineStatsCollector(model_name, stats_source))
        # Zeros when the cache is off, so dashboards and alerts always find the series.
        cache_source = response_cache_stats or ResponseCacheStats
        self.registry.register(ResponseCacheCollector(model_name, cache_source))
        label = ["model_name"]

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, label, buckets=buckets, registry=self.registry)

        self._ttft = histogram(
            "vllm:time_to_first_token_seconds", "Arrival to first token.", TTFT_BUCKETS
        )
        self._itl = histogram(
            "vllm:inter_token_latency_seconds", "Time between streamed tokens.", ITL_BUCKETS
        )
        self._e2e = histogram(
            "vllm:e2e_request_latency_seconds", "Arrival to last token.", REQUEST_LATENCY_BUCKETS
        )
        self._queue = histogram(
            "vllm:request_queue_time_seconds", "Time spent waiting.", REQUEST_LATENCY_BUCKETS
        )
        self._prompt_len = histogram(
            "vllm:request_prompt_tokens", "Prompt length per request.", TOKEN_COUNT_BUCKETS
        )
        self._generation_len = histogram(
            "vllm:request_generation_tokens", "Output length per request.", TOKEN_COUNT_BUCKETS
        )
        self._success = Counter(
            "vllm:request_success",
            "Finished requests by finish reason.",
            ["model_name", "finished_reason"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "llm_server_rejected_requests",
            "Requests refused before reaching the engine, by reason.",
            ["model_name", "reason"],
            registry=self.registry,
        )
        self._inflight = Gauge(
            "llm_server_inflight_requests",
            "HTTP generation requests accepted and not yet answered.",
            label,
            registry=self.registry,
        )
        self._ready = Gauge(
            "llm_server_ready", "1 when serving, 0 while loading or draining.", label,
            registry=self.registry,
        )  # fmt: skip
        self._info = Gauge(
            "llm_server_info",
            "Build and runtime facts; the value is always 1.",
            ["model_name", *sorted(info)],
            registry=self.registry,
        )
        self.set_info(info)
        for metric in (self._inflight, self._ready):
            metric.labels(model_name)

    def set_info(self, info: Mapping[str, str]) -> None:
        """One llm_server_info series: the facts as they are now (the same keys each time)."""
        self._info.clear()
        self._info.labels(self.model_name, *(info[key] for key in sorted(info))).set(1)

    def observe_first_token(self, ttft_s: float, queue_time_s: float | None) -> None:
        self._ttft.labels(self.model_name).observe(ttft_s)
        if queue_time_s is not None:
            self._queue.labels(self.model_name).observe(queue_time_s)

    def observe_inter_token(self, seconds: float) -> None:
        self._itl.labels(self.model_name).observe(seconds)

    def observe_finished(
        self, e2e_s: float, prompt_tokens: int, generation_tokens: int, finish_reason: str
    ) -> None:
        self._e2e.labels(self.model_name).observe(e2e_s)
        self._prompt_len.labels(self.model_name).observe(prompt_tokens)
        self._generation_len.labels(self.model_name).observe(generation_tokens)
        self._success.labels(self.model_name, finish_reason).inc()

    def count_rejected(self, reason: str) -> None:
        self._rejected.labels(self.model_name, reason).inc()

    def set_inflight(self, count: int) -> None:
        self._inflight.labels(self.model_name).set(count)

    def set_ready(self, ready: bool) -> None:
        self._ready.labels(self.model_name).set(1 if ready else 0)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
