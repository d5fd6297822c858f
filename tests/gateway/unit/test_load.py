"""Replica load: our in-flight requests plus what the pods report, counted once."""

from __future__ import annotations

from llm_gateway.directory import Replica
from llm_gateway.load import LoadTracker, parse_queue

SERVER_METRICS = """\
# HELP vllm:num_requests_waiting Requests waiting to be scheduled.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="tiny"} 3.0
# HELP vllm:num_requests_running Requests in the running batch.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="tiny"} 5.0
vllm:num_requests_running_total_fake 100.0
vllm:num_requests_waiting 1
"""

A = Replica("a", "http://a:8000", True, False)
B = Replica("b", "http://b:8000", True, False)


def test_parse_queue_sums_waiting_and_running() -> None:
    assert parse_queue(SERVER_METRICS) == 9
    assert parse_queue("") == 0
    assert parse_queue('vllm:num_requests_waiting{x="}"} not-a-number\n') == 0


def test_own_requests_count_once() -> None:
    tracker = LoadTracker(failing_seconds=5)
    for _ in range(4):
        tracker.started(A.url)
    tracker.scraped(A.url, 6)  # 4 of them ours, 2 from another gateway
    assert tracker.loads([A, B]) == {"a": 6, "b": 0}
    tracker.finished(A.url)
    assert tracker.loads([A]) == {"a": 5}
    tracker.scraped(B.url, 2)
    assert tracker.loads([B]) == {"b": 2}


def test_failing_marks_expire() -> None:
    now = [0.0]
    tracker = LoadTracker(failing_seconds=5, clock=lambda: now[0])
    tracker.mark_failing(A.url)
    assert tracker.failing_pods([A, B]) == {"a"}
    now[0] = 5.1
    assert tracker.failing_pods([A, B]) == set()
