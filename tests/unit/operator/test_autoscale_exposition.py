"""The collector's tiny Prometheus text parser, checked against prometheus_client's own output."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llm_operator.autoscale.exposition import ExpositionError, parse_samples, pod_signals

# The shape llm-server serves (vLLM's names; counters end in _total, histograms in _sum/_count).
PAGE = """\
# HELP vllm:num_requests_waiting Requests waiting to be scheduled.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="tiny"} 7.0
# HELP vllm:num_requests_running Requests in the running batch.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="tiny"} 1.0
vllm:kv_cache_usage_perc{model_name="tiny"} 0.25
vllm:gpu_cache_usage_perc{model_name="tiny"} 0.25
vllm:prompt_tokens_total{model_name="tiny"} 1234.0
vllm:generation_tokens_total{model_name="tiny"} 5678.0
vllm:request_queue_time_seconds_bucket{le="0.3",model_name="tiny"} 3.0
vllm:request_queue_time_seconds_sum{model_name="tiny"} 4.5
vllm:request_queue_time_seconds_count{model_name="tiny"} 9.0
vllm:e2e_request_latency_seconds_sum{model_name="tiny"} 12.25
"""


def test_pod_signals_from_an_llm_server_page() -> None:
    pod = pod_signals("chat-a", PAGE)
    assert (pod.name, pod.scrape_ok, pod.waiting, pod.running) == ("chat-a", True, 7, 1)
    assert pod.prompt_tokens_total == 1234.0
    assert pod.generation_tokens_total == 5678.0
    assert pod.kv_cache_usage == 0.25
    assert pod.queue_seconds_total == 4.5
    assert pod.latency_seconds_total == 12.25


def test_optional_series_may_be_missing() -> None:
    page = "vllm:num_requests_waiting 0\nvllm:num_requests_running 2\n"
    pod = pod_signals("p", page)
    assert (pod.waiting, pod.running, pod.generation_tokens_total) == (0, 2, 0.0)
    assert pod.queue_seconds_total is None  # no queue-time counter: no interval average
    assert pod.latency_seconds_total is None


@pytest.mark.parametrize(
    "page",
    [
        "",  # an empty page
        "vllm:num_requests_running 1\n",  # no queue gauge: not an llm-server
        "<html>Not Found</html>\n",
        'vllm:num_requests_waiting{model_name="x 1\n',  # unterminated labels
        "vllm:num_requests_waiting abc\nvllm:num_requests_running 1\n",
        "vllm:num_requests_waiting\n",
    ],
)
def test_pages_that_are_not_metrics_are_errors(page: str) -> None:
    with pytest.raises(ExpositionError):
        pod_signals("p", page)


def test_labels_with_braces_quotes_and_spaces_timestamps_and_nan() -> None:
    text = (
        'm{a="x} y",b="say \\"hi\\" {now}"} 2 1700000000000\n'
        "m 3\n"
        'n{a="1"} NaN\n'
        "  # indented comment\n"
        'o{a="1",} +Inf\n'
    )
    samples = parse_samples(text)
    assert samples["m"] == 5.0
    assert "n" not in samples  # NaN carries nothing to sum
    assert samples["o"] == float("inf")


def test_agrees_with_prometheus_client_on_tricky_label_values() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("vllm:num_requests_waiting", "w", ["model_name"], registry=registry)
    running = Gauge("vllm:num_requests_running", "r", ["model_name"], registry=registry)
    tokens = Counter("vllm:generation_tokens", "g", ["model_name"], registry=registry)
    queue = Histogram("vllm:request_queue_time_seconds", "q", ["model_name"], registry=registry)
    names = ['a "quoted" model', "brace } and { back\\slash", "new\nline", "plain"]
    for i, name in enumerate(names):
        gauge.labels(name).set(i + 1)
        running.labels(name).set(2)
        tokens.labels(name).inc(10 * (i + 1))
        queue.labels(name).observe(0.5 * (i + 1))
    pod = pod_signals("p", generate_latest(registry).decode())
    assert pod.waiting == 1 + 2 + 3 + 4  # summed over the model names
    assert pod.running == 8
    assert pod.generation_tokens_total == 100.0
    assert pod.queue_seconds_total == pytest.approx(5.0)
