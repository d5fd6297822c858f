"""The GPU-fallback state machine, as a table (pure; no clock, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import FallbackState
from llm_operator.plan import FallbackSettings, PodSummary, step_fallback
from llm_operator.plan.fallback import options_digest
from llm_operator.plan.timefmt import format_time

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = FallbackSettings(
    unschedulable_seconds=300, primary_retry_seconds=1800, primary_retry_max_seconds=7200
)
SPEC = LLMDeploymentSpec.model_validate(
    {
        "model": {"uri": "hf://org/model", "parameterCount": "8B"},
        "optimization": {"quantization": "int8"},
        "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}, {"type": "L40S"}]},
    }
)
DIGEST = options_digest(SPEC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def stuck(option: str, seconds: float, name: str = "p") -> PodSummary:
    return PodSummary(name=name, option=option, unschedulable_since=ago(seconds))


def ready(option: str, name: str = "r") -> PodSummary:
    return PodSummary(name=name, option=option, phase="Running", ready=True)


def state(index: int | None, since: float = 0, **extra: Any) -> FallbackState:
    return FallbackState(index=index, since=format_time(ago(since)), options=DIGEST, **extra)


def probe_at(seconds_from_now: float) -> str:
    return format_time(NOW + timedelta(seconds=seconds_from_now))


CASES = [
    # (id, previous state, pods, expected index, expected transition, exhausted)
    ("no pods yet", None, [], None, None, False),
    ("pending shorter than the timeout", None, [stuck("primary", 299)], None, None, False),
    (
        "pending longer: first fallback",
        None,
        [stuck("primary", 301)],
        0,
        "FallbackActivated",
        False,
    ),
    (
        "some primary pods ready: stay (partial capacity is no reason to move)",
        None,
        [stuck("primary", 900), ready("primary")],
        None,
        None,
        False,
    ),
    (
        "pods of another option do not count",
        None,
        [stuck("fallback-0", 900)],
        None,
        None,
        False,
    ),
    (
        "deleting pods do not count",
        None,
        [PodSummary("p", "primary", unschedulable_since=ago(900), deleting=True)],
        None,
        None,
        False,
    ),
    (
        "fallback 0 stuck too: fallback 1",
        state(0, since=400, next_primary_probe=probe_at(1400)),
        [stuck("fallback-0", 301)],
        1,
        "FallbackActivated",
        False,
    ),
    (
        "the timeout counts from the switch, not from an older pod condition",
        state(0, since=100, next_primary_probe=probe_at(1700)),
        [stuck("fallback-0", 900)],
        0,
        None,
        False,
    ),
    (
        "last fallback stuck: exhausted, stays",
        state(1, since=900, next_primary_probe=probe_at(900)),
        [stuck("fallback-1", 400)],
        1,
        None,
        True,
    ),
    (
        "on a fallback, probe not due yet",
        state(0, since=600, next_primary_probe=probe_at(1200)),
        [ready("fallback-0")],
        0,
        None,
        False,
    ),
    (
        "on a fallback, probe due: try the primary",
        state(0, since=1800, next_primary_probe=probe_at(0)),
        [ready("fallback-0")],
        None,
        "PrimaryProbe",
        False,
    ),
    (
        "probing, primary still pending within the timeout: keep probing",
        state(None, since=100, probe_return_index=0),
        [ready("fallback-0"), stuck("primary", 100)],
        None,
        None,
        False,
    ),
    (
        "probing, primary stuck past the timeout: back to the fallback",
        state(None, since=400, probe_return_index=0),
        [ready("fallback-0"), stuck("primary", 301)],
        0,
        "PrimaryProbeFailed",
        False,
    ),
    (
        "probing, a primary pod ready but another stuck: the probe fails",
        state(None, since=400, probe_return_index=0),
        [ready("primary", "a"), stuck("primary", 301, "b")],
        0,
        "PrimaryProbeFailed",
        False,
    ),
    (
        "probing, primary has all desired pods ready: restored, state cleared",
        state(None, since=100, probe_return_index=1, failed_probes=2),
        [ready("primary"), ready("fallback-1", "old")],
        None,
        "PrimaryRestored",
        False,
    ),
]


@pytest.mark.parametrize(
    ("previous", "pods", "index", "transition", "exhausted"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_fallback_table(
    previous: FallbackState | None,
    pods: list[PodSummary],
    index: int | None,
    transition: str | None,
    exhausted: bool,
) -> None:
    step = step_fallback(SPEC, previous, pods, 1, NOW, SETTINGS)
    assert step.index == index
    assert (step.transition.kind if step.transition else None) == transition
    assert step.exhausted == exhausted


@pytest.mark.parametrize(
    ("target", "transition"),
    [(2, "PrimaryRestored"), (3, None)],
    ids=["2 ready of a target of 2: restored", "2 ready of 3: keep probing"],
)
def test_a_probe_completes_at_the_replica_target_it_is_given(
    target: int, transition: str | None
) -> None:
    # decide() passes the replica target (budget included); the fallback compares the
    # primary's ready pods with it and nothing else.
    previous = state(None, since=100, probe_return_index=0)
    pods = [ready("primary", "a"), ready("primary", "b"), ready("fallback-0", "old")]
    step = step_fallback(SPEC, previous, pods, target, NOW, SETTINGS)
    assert (step.transition.kind if step.transition else None) == transition


def test_failed_probes_back_off_exponentially_up_to_the_cap() -> None:
    previous = state(None, since=400, probe_return_index=0, failed_probes=1)
    step = step_fallback(SPEC, previous, [stuck("primary", 301)], 1, NOW, SETTINGS)
    assert step.state is not None
    assert step.state.failed_probes == 2
    assert step.state.next_primary_probe == probe_at(7200)  # 1800 * 2**2 capped at 7200
    assert SETTINGS.retry_after(0) == 1800
    assert SETTINGS.retry_after(1) == 3600


def test_a_changed_accelerator_spec_resets_the_state() -> None:
    previous = FallbackState(index=1, since=format_time(ago(10)), options="something-else")
    step = step_fallback(SPEC, previous, [], 1, NOW, SETTINGS)
    assert step.state is None


def test_requeue_when_the_timeout_will_expire() -> None:
    step = step_fallback(SPEC, None, [stuck("primary", 200)], 1, NOW, SETTINGS)
    assert step.waiting
    assert step.requeue_after == pytest.approx(100)


def test_requeue_when_the_probe_is_due() -> None:
    previous = state(0, since=600, next_primary_probe=probe_at(1200))
    step = step_fallback(SPEC, previous, [ready("fallback-0")], 1, NOW, SETTINGS)
    assert step.requeue_after == pytest.approx(1200)


def test_no_flapping_over_a_simulated_day() -> None:
    """Primary never schedulable: switches stay bounded by the backoff, not the resync rate."""
    previous: FallbackState | None = None
    switches, clock = 0, NOW
    for _ in range(24 * 60):  # one reconcile a minute for a day
        clock += timedelta(minutes=1)
        option = "primary" if previous is None or previous.index is None else "fallback-0"
        since = clock - timedelta(minutes=10)
        pods = [PodSummary("p", option, unschedulable_since=since)]
        if option == "fallback-0":
            pods = [ready("fallback-0")]
        step = step_fallback(SPEC, previous, pods, 1, clock, SETTINGS)
        switches += step.transition is not None
        previous = step.state
    # 1 fallback, then probes at +30 min, +60, +120, then every 2 h: each probe and its failure
    assert switches <= 1 + 2 * (3 + 24 // 2)
