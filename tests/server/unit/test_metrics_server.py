"""Metric names, labels and values in Prometheus' text format, parsed by its own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from llm_server.engine.request import EngineStats
from llm_server.metrics import ServerMetrics

VLLM_NAMES = {
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:num_preemptions",
}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: ServerMetrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset({"model_name": "m", **labels}.items()))]


def test_every_vllm_series_exists_before_the_engine_loads() -> None:
    metrics = ServerMetrics("m", {"dtype": "fp32"}, lambda: None)
    body, _ = metrics.render()
    families = {family.name for family in text_string_to_metric_families(body.decode())}
    assert families >= VLLM_NAMES
    samples = scrape(metrics)
    assert value(samples, "vllm:num_requests_waiting") == 0
    assert not any(name.endswith("_created") for name, _ in samples)


def test_engine_gauges_are_read_at_scrape_time() -> None:
    stats = [EngineStats(3, 5, 0.5, 2, 5, 40, 100, 200)]
    metrics = ServerMetrics("m", {"dtype": "fp32", "device": "cpu"}, lambda: stats[0])
    samples = scrape(metrics)
    assert value(samples, "vllm:num_requests_waiting") == 3
    assert value(samples, "vllm:num_requests_running") == 5
    assert value(samples, "vllm:kv_cache_usage_perc") == 0.5
    assert value(samples, "vllm:num_preemptions_total") == 2
    assert value(samples, "vllm:prompt_tokens_total") == 100
    assert value(samples, "vllm:generation_tokens_total") == 200
    assert value(samples, "llm_server_batch_size") == 5
    assert value(samples, "llm_server_info", dtype="fp32", device="cpu") == 1
    stats[0] = EngineStats(0, 1, 0.1, 2, 1, 1, 110, 230)
    assert value(scrape(metrics), "vllm:num_requests_waiting") == 0


def test_request_observations_land_in_histograms_and_counters() -> None:
    metrics = ServerMetrics("m", {}, lambda: None)
    metrics.observe_first_token(0.2, 0.05)
    metrics.observe_inter_token(0.03)
    metrics.observe_finished(1.5, prompt_tokens=10, generation_tokens=2, finish_reason="stop")
    metrics.count_rejected("queue_full")
    metrics.set_ready(True)
    samples = scrape(metrics)
    assert value(samples, "vllm:time_to_first_token_seconds_count") == 1
    assert value(samples, "vllm:time_to_first_token_seconds_bucket", le="0.25") == 1
    assert value(samples, "vllm:request_queue_time_seconds_sum") == 0.05
    assert value(samples, "vllm:inter_token_latency_seconds_count") == 1
    assert value(samples, "vllm:e2e_request_latency_seconds_sum") == 1.5
    assert value(samples, "vllm:request_success_total", finished_reason="stop") == 1
    assert value(samples, "llm_server_rejected_requests_total", reason="queue_full") == 1
    assert value(samples, "llm_server_ready") == 1
