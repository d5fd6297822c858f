"""TokenMeter: the generation-token rate behind $ per million tokens, as a table."""

from __future__ import annotations

import pytest

from llm_operator.autoscale.signals import PodSignals
from llm_operator.autoscale.tokens import TokenMeter


def pods(**totals: float | None) -> tuple[PodSignals, ...]:
    """name=total generated so far; None = the scrape of that pod failed."""
    return tuple(
        PodSignals.failed(name)
        if total is None
        else PodSignals(name, generation_tokens_total=total)
        for name, total in totals.items()
    )


@pytest.mark.parametrize(
    ("steps", "rate"),
    [
        # (time, pods) per scrape -> the rate after the last one
        ([(0, pods(a=100))], None),  # one reading: nothing measured yet
        ([(0, pods(a=100)), (10, pods(a=600))], 50.0),
        ([(0, pods(a=100, b=0)), (10, pods(a=600, b=1000))], 150.0),  # pods add up
        ([(0, pods(a=100)), (10, pods(a=100))], 0.0),  # measured: nothing generated
        ([(0, pods(a=900)), (10, pods(a=50))], None),  # counter reset (pod restarted)
        ([(0, pods(a=0)), (10, pods(a=None)), (20, pods(a=2000))], 100.0),  # gap bridged
        ([(0, pods(a=0)), (10, pods(b=500))], None),  # a new pod: no rate yet
        ([(0, pods(a=0, b=0)), (10, pods(a=100, b=None))], 10.0),  # lower bound
    ],
)
def test_rate(steps: list[tuple[float, tuple[PodSignals, ...]]], rate: float | None) -> None:
    meter = TokenMeter()
    for now, ready in steps:
        meter = meter.update(ready, now)
    assert meter.tokens_per_second == (None if rate is None else pytest.approx(rate))


def test_pods_that_left_are_forgotten() -> None:
    meter = TokenMeter().update(pods(a=1, b=2), 0).update(pods(b=3), 10)
    assert [name for name, _, _ in meter.readings] == ["b"]
