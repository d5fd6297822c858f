"""Standard Kubernetes Conditions, computed purely (house rule 8)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from llm_operator.api.status import Condition, ConditionStatus
from llm_operator.plan.timefmt import format_time

# Order in which conditions are listed in the status.
CONDITION_ORDER = (
    "Ready",
    "Progressing",
    "Degraded",
    "FallbackActive",
    "BudgetLimited",
    "ScalingLimited",
)


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> tuple[Condition, ...]:
    """`conditions` with `type_` set; lastTransitionTime moves only when the status changes."""
    old = find(conditions, type_)
    since = old.last_transition_time if old is not None and old.status == status else None
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since or format_time(now),
        observed_generation=generation,
    )
    rest = [c for c in conditions if c.type != type_]
    ordered = sorted(
        [*rest, new],
        key=lambda c: CONDITION_ORDER.index(c.type) if c.type in CONDITION_ORDER else 99,
    )
    return tuple(ordered)


def transitioned(
    before: Sequence[Condition],
    after: Sequence[Condition],
    type_: str,
    status: str,
    *,
    on_message: bool = False,
) -> Condition | None:
    """The new condition when `type_` turned `status` (or, with `on_message`, changed wording)."""
    new, old = find(after, type_), find(before, type_)
    if new is None or new.status != status:
        return None
    if old is None or old.status != new.status:
        return new
    if on_message and (old.reason, old.message) != (new.reason, new.message):
        return new
    return None
