"""Generation-token rate from the pods' counters, for $ per million tokens. Pure.

The rate is each pod's counter increase over the time since its previous reading, summed. A
pod seen for the first time, or whose counter went down (it restarted), adds nothing this
time. A pod that did not answer keeps its old reading, so its tokens count next time over the
longer interval instead of being lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_operator.autoscale.signals import PodSignals


@dataclass(frozen=True)
class TokenMeter:
    """Counter readings (pod, time in seconds, generation tokens) and the last rate measured.

    tokens_per_second is None until two readings of one pod exist (nothing measured yet).
    """

    readings: tuple[tuple[str, float, float], ...] = ()
    tokens_per_second: float | None = None

    def update(self, ready: tuple[PodSignals, ...], now: float) -> TokenMeter:
        """The meter after one scrape of the ready pods at `now`."""
        before = {name: (t, total) for name, t, total in self.readings}
        keep = {name: before[name] for name in (p.name for p in ready) if name in before}
        rate, measured = 0.0, False
        for pod in ready:
            if not pod.scrape_ok:
                continue
            previous = before.get(pod.name)
            if previous and now > previous[0] and pod.generation_tokens_total >= previous[1]:
                rate += (pod.generation_tokens_total - previous[1]) / (now - previous[0])
                measured = True
            keep[pod.name] = (now, pod.generation_tokens_total)
        readings = tuple((name, t, total) for name, (t, total) in sorted(keep.items()))
        return TokenMeter(readings, rate if measured else None)
