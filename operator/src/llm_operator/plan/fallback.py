"""GPU fallbacks: when to leave an accelerator option and when to try the primary again. Pure.

The rule (docs/operator.md, "GPU fallbacks"):

- Leave the current option only when none of its pods is ready and one of them has been
  unschedulable (PodScheduled=False, Unschedulable) for `unschedulable_seconds`. The next
  option in spec order is taken; after the last one there is nowhere to go: `exhausted`.
- On a fallback, probe the primary `primary_retry_seconds` after switching, doubling after
  each failed probe up to `primary_retry_max_seconds`. A probe points the Deployment back at
  the primary; `maxUnavailable: 0` keeps the fallback pods serving meanwhile.
- A probe fails when a primary pod stays unschedulable for `unschedulable_seconds` (back to
  the fallback it came from, backoff doubled); it succeeds when the primary has all desired
  pods ready (fallback state cleared).

So an option is left at most once per `unschedulable_seconds`, and the primary is probed at
most once per `primary_retry_seconds` (then ever less often): no flapping.

Only a shortage of the accelerator moves pods to another one (`waits_for_accelerator`, read
from the scheduler's message): insufficient GPUs (an extended resource such as
`nvidia.com/gpu`), or no node that matches the pod's accelerator affinity or tolerates its
taints. Any other reason (a missing PVC, too little CPU on the GPU nodes) is the same on every
GPU type: after `unschedulable_seconds` it is `blocked`, reported as Degraded with the
scheduler's message, and no fallback happens (issue 16: a missing PVC walked H100 -> H200 ->
A100, $44/h -> $81/h).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import FallbackState
from llm_operator.plan.observed import PodSummary
from llm_operator.plan.timefmt import format_time, parse_time

# "0/5 nodes are available: 2 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node
# affinity/selector. preemption: ...": one "<count> <reason>" per group of nodes. A message
# without counts ("persistentvolumeclaim "x" not found") failed before nodes were compared.
_NODE_REASONS = re.compile(r"nodes are available: (?P<reasons>\d+ .*?)\.(?:\s|$)")
_COUNTED = re.compile(r"^\d+ (?P<text>.+)$")
# Nodes this pod cannot use at all (another accelerator type, a taint it does not tolerate):
# alone, they mean no node of the accelerator is there.
_NOT_OURS = ("didn't match Pod's node affinity/selector", "untolerated taint")


def waits_for_accelerator(message: str | None) -> bool:
    """Whether the scheduler's message says the pod waits for accelerator capacity.

    Yes when some node lacks an extended resource (`Insufficient nvidia.com/gpu`; core
    resources have no domain), or when every node is another accelerator's or tainted. No for
    any other reason (core resources, volumes, ports ...) on the nodes that could serve it,
    and for failures before nodes were compared (a missing PVC). No message: yes (the
    pre-message behaviour, e.g. a pod condition written by a test or an old scheduler).
    """
    if not message:
        return True
    found = _NODE_REASONS.search(message.split(" preemption:")[0])
    if found is None:
        return False
    reasons = []
    for part in found.group("reasons").split(", "):
        counted = _COUNTED.match(part.strip())
        if counted is not None:
            reasons.append(counted.group("text").strip())
    if any(r.startswith("Insufficient ") and "/" in r for r in reasons):
        return True
    return bool(reasons) and all(any(n in r for n in _NOT_OURS) for r in reasons)


@dataclass(frozen=True)
class FallbackSettings:
    unschedulable_seconds: float = 300.0
    primary_retry_seconds: float = 1800.0
    primary_retry_max_seconds: float = 4 * 3600.0

    def retry_after(self, failed_probes: int) -> float:
        backoff: float = self.primary_retry_seconds * 2.0**failed_probes
        return min(backoff, self.primary_retry_max_seconds)


@dataclass(frozen=True)
class Transition:
    """A switch between options, for the Event."""

    kind: str  # FallbackActivated, PrimaryProbe, PrimaryProbeFailed, PrimaryRestored
    warning: bool
    message: str


@dataclass(frozen=True)
class FallbackStep:
    state: FallbackState | None  # None: on the primary, no fallback history
    transition: Transition | None = None
    exhausted: bool = False  # every option is unschedulable
    waiting: bool = False  # some pod of the current option is unschedulable
    requeue_after: float | None = None
    blocked: str | None = None  # the scheduler's message for a non-accelerator reason

    @property
    def index(self) -> int | None:
        return None if self.state is None else self.state.index


def option_label(index: int | None) -> str:
    """The pods' accelerator-option label (render.objects)."""
    return "primary" if index is None else f"fallback-{index}"


def describe(spec: LLMDeploymentSpec, index: int | None) -> str:
    accelerator = spec.accelerator
    if index is None:
        return f"primary ({accelerator.count}x {accelerator.type})"
    option = accelerator.fallbacks[index]
    return f"fallback {index} ({option.count}x {option.type})"


def options_digest(spec: LLMDeploymentSpec) -> str:
    text = json.dumps(spec.accelerator.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _current(spec: LLMDeploymentSpec, previous: FallbackState | None) -> FallbackState | None:
    """The previous state, unless spec.accelerator changed since (then: start on the primary)."""
    if previous is None or previous.options != options_digest(spec):
        return None
    if previous.index is not None and previous.index >= len(spec.accelerator.fallbacks):
        return None
    return previous


def step_fallback(
    spec: LLMDeploymentSpec,
    previous: FallbackState | None,
    pods: Sequence[PodSummary],
    desired_replicas: int,
    now: datetime,
    settings: FallbackSettings,
) -> FallbackStep:
    state = _current(spec, previous)
    index = None if state is None else state.index
    switched = parse_time(state.since) if state is not None else None
    mine = [p for p in pods if p.option == option_label(index) and not p.deleting]
    ready = sum(p.ready for p in mine)
    stuck = [p for p in mine if p.unschedulable_since is not None]
    stuck_since = [
        max(p.unschedulable_since, switched) if switched else p.unschedulable_since
        for p in stuck
        if p.unschedulable_since is not None and waits_for_accelerator(p.unschedulable_message)
    ]
    oldest = min(stuck_since) if stuck_since else None
    other = sorted(
        (p.unschedulable_since, p.unschedulable_message or "")
        for p in stuck
        if p.unschedulable_since is not None and not waits_for_accelerator(p.unschedulable_message)
    )
    probing = state is not None and state.probe_return_index is not None
    timeout = timedelta(seconds=settings.unschedulable_seconds)
    due = oldest is not None and now - oldest >= timeout and (probing or ready == 0)
    digest = options_digest(spec)
    failed = 0 if state is None else state.failed_probes

    def on(target: int | None, failures: int, returning: int | None = None) -> FallbackState:
        probe_at = None
        if target is not None:
            probe_at = format_time(now + timedelta(seconds=settings.retry_after(failures)))
        return FallbackState(
            index=target,
            since=format_time(now),
            options=digest,
            probe_return_index=returning,
            failed_probes=failures,
            next_primary_probe=probe_at,
        )

    waited = f"unschedulable for {settings.unschedulable_seconds:.0f}s"
    if due and state is not None and state.probe_return_index is not None:
        back = state.probe_return_index
        new = on(back, failed + 1)
        retry = settings.retry_after(failed + 1)
        message = (
            f"{describe(spec, None)} still {waited}; back to {describe(spec, back)}, "
            f"next try in {retry:.0f}s"
        )
        return FallbackStep(new, Transition("PrimaryProbeFailed", True, message))
    if due:
        following = 0 if index is None else index + 1
        if following < len(spec.accelerator.fallbacks):
            new = on(following, failed)
            message = f"{describe(spec, index)} {waited}; switched to {describe(spec, following)}"
            return FallbackStep(new, Transition("FallbackActivated", True, message))
        return FallbackStep(
            state, exhausted=True, waiting=True, requeue_after=_until_probe(state, now)
        )
    if probing and ready >= max(desired_replicas, 1) and oldest is None:
        message = f"{describe(spec, None)} has {ready} ready pods again; fallback cleared"
        return FallbackStep(None, Transition("PrimaryRestored", False, message))
    if state is not None and index is not None and not probing:
        probe_at = parse_time(state.next_primary_probe)
        if probe_at is None or now >= probe_at:
            new = on(None, failed, returning=index)
            message = (
                f"probing {describe(spec, None)}; {describe(spec, index)} keeps serving "
                "until the primary's pods are ready"
            )
            return FallbackStep(new, Transition("PrimaryProbe", False, message))
    waits = [_seconds(oldest + timeout - now)] if oldest is not None else []
    blocked = None
    if other:
        since, message = other[0]
        if now - since >= timeout:
            blocked = message
        else:
            waits.append(_seconds(since + timeout - now))
    until_probe = _until_probe(state, now)
    if until_probe is not None:
        waits.append(until_probe)
    return FallbackStep(
        state,
        waiting=oldest is not None,
        requeue_after=min(waits, default=None),
        blocked=blocked,
    )


def _seconds(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0)


def _until_probe(state: FallbackState | None, now: datetime) -> float | None:
    if state is None or state.index is None or state.probe_return_index is not None:
        return None
    probe_at = parse_time(state.next_primary_probe)
    return None if probe_at is None else _seconds(probe_at - now)
