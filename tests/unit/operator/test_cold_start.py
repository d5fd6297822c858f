"""Cold start (pod created -> Ready): parsed from the pod, measured once per pod. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llm_operator.api.status import ColdStart
from llm_operator.plan.cold_start import RECENT_COLD_STARTS, measure_cold_starts
from llm_operator.plan.observed import PodSummary, summarize_pod
from llm_operator.plan.timefmt import format_time

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def pod(name: str, created: float, ready: float | None, restarts: int = 0) -> PodSummary:
    return PodSummary(
        name,
        "primary",
        "Running",
        ready=ready is not None,
        created=T0 + timedelta(seconds=created),
        ready_since=None if ready is None else T0 + timedelta(seconds=ready),
        restarts=restarts,
    )


def test_a_pod_body_gives_its_creation_ready_time_and_restarts() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "p0", "creationTimestamp": "2026-01-01T12:00:00Z"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": "2026-01-01T12:00:01Z",
                },
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T12:01:30Z"},
            ],
            "containerStatuses": [{"name": "llm-server", "restartCount": 0}],
        },
    }
    summary = summarize_pod(body)
    assert summary.cold_start_seconds == 90.0
    body["status"]["containerStatuses"][0]["restartCount"] = 2
    assert summarize_pod(body).restarts == 2
    assert summarize_pod(body).cold_start_seconds is None  # that Ready is the restart's
    body["status"]["conditions"][1]["status"] = "False"
    assert summarize_pod(body).ready_since is None


def test_each_pod_is_measured_once_in_ready_order() -> None:
    first = measure_cold_starts(None, [pod("b", 0, 50), pod("a", 0, 30), pod("c", 0, None)])
    assert first.measured == (30.0, 50.0)
    assert first.status is not None
    assert (first.status.last_seconds, first.status.samples) == (50.0, 2)
    assert first.status.last_pod == "b"
    assert first.status.last_ready_time == format_time(T0 + timedelta(seconds=50))

    # the same pods again, and c turns ready: only c is new
    second = measure_cold_starts(first.status, [pod("a", 0, 30), pod("b", 0, 50), pod("c", 0, 80)])
    assert second.measured == (80.0,)
    assert second.status is not None
    assert second.status.recent_seconds == [30.0, 50.0, 80.0]
    assert (second.status.median_seconds, second.status.samples) == (50.0, 3)

    nothing_new = measure_cold_starts(second.status, [pod("c", 0, 80)])
    assert nothing_new.measured == () and nothing_new.status == second.status


def test_pods_ready_in_the_same_second_are_each_counted() -> None:
    first = measure_cold_starts(None, [pod("a", 0, 40)])
    later = measure_cold_starts(first.status, [pod("a", 0, 40), pod("b", 10, 40)])
    assert later.measured == (30.0,)


def test_a_restarted_or_deleting_pod_is_not_a_cold_start() -> None:
    restarted = pod("a", 0, 500, restarts=1)
    deleting = PodSummary(
        "b", "primary", ready=True, deleting=True, created=T0, ready_since=T0 + timedelta(seconds=9)
    )
    result = measure_cold_starts(None, [restarted, deleting])
    assert result.measured == () and result.status is None


def test_the_median_is_over_the_recent_pods_and_samples_count_all() -> None:
    status: ColdStart | None = None
    for i in range(RECENT_COLD_STARTS + 5):
        status = measure_cold_starts(status, [pod(f"p{i:02}", i * 100, i * 100 + 10 + i)]).status
    assert status is not None
    assert status.samples == RECENT_COLD_STARTS + 5
    assert len(status.recent_seconds) == RECENT_COLD_STARTS
    assert status.recent_seconds[0] == 15.0  # the first five fell out
    assert status.median_seconds == 24.5
    assert status.last_seconds == 10 + RECENT_COLD_STARTS + 4
