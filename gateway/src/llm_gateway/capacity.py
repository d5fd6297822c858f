"""Whether a model's replicas have room for one more request: the fair queue's saturation
test, and the pods the pick leaves alone while others have room.

A replica is full when its load (this gateway's requests in flight plus what its /metrics
says other clients run, load.py) reaches the model's capacity per replica (the LLMDeployment's
batching.maxConcurrentSequences). A model without a capacity is never saturated.
"""

from __future__ import annotations

from llm_gateway.directory import Directory, ModelTarget
from llm_gateway.load import LoadTracker


class Capacity:
    def __init__(self, directory: Directory, tracker: LoadTracker) -> None:
        self._directory = directory
        self._tracker = tracker

    def current(self, target: ModelTarget) -> ModelTarget:
        """The target as the directory has it now (replicas come and go while one waits)."""
        current = self._directory.get(target.model)
        same = current is not None and current.deployment == target.deployment
        return current if same and current is not None else target

    def full_pods(self, target: ModelTarget) -> set[str]:
        capacity = target.capacity_per_replica
        if capacity is None:
            return set()
        loads = self._tracker.loads(target.replicas)
        return {pod for pod, load in loads.items() if load >= capacity}

    def has_room(self, target: ModelTarget) -> bool:
        """A serving replica is below its capacity. (A failing one counts: that is not
        saturation, and the pick and the retry deal with it as without a capacity.)"""
        target = self.current(target)
        full = self.full_pods(target)
        return any(r.pod not in full for r in target.serving())
