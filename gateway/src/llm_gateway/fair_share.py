"""Start-time fair queueing of one model's waiting requests, by tenant weight and priority: pure.

Each request gets a start tag (the later of virtual time and its tenant's last finish tag) and
a finish tag one unit / weight later; requests leave in finish-tag order, and virtual time
moves to the start tag of the one that left. While two tenants both wait, the one of weight 3
leaves three times as often; a tenant that was idle banks no credit (its tags start at virtual
time). Bounded: an arrival at a full queue sheds the newest request of a lower priority class,
or is refused. fair_queue.py does the waiting.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from llm_operator.api.tenant import Priority

PRIORITY_RANK: dict[str, int] = {"low": 0, "normal": 1, "high": 2}


@dataclass(frozen=True)
class Share:
    """Who a request is, for fair queueing."""

    tenant: tuple[str, str]  # (namespace, name); (the model's namespace, "") if anonymous
    weight: int = 1
    priority: Priority = "normal"


@dataclass(eq=False)
class Entry:
    """One waiting request: its start and finish tags in the model's virtual time."""

    share: Share
    start: float
    finish: float
    seq: int  # arrival order: breaks ties, and the newest of a class is shed first
    shed: bool = False

    @property
    def order(self) -> tuple[float, int]:
        return (self.finish, self.seq)


class FairOrder:
    """One model's waiting requests in dispatch order. Pure: no clock, no waiting."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._virtual = 0.0  # the start tag of the request dispatched last
        self._last_finish: dict[tuple[str, str], float] = {}
        self._waiting: list[Entry] = []  # sorted by Entry.order
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._waiting)

    def head(self) -> Entry | None:
        return self._waiting[0] if self._waiting else None

    def push(self, share: Share) -> tuple[Entry | None, Entry | None]:
        """(the new entry or None when refused, the entry shed to make room or None)."""
        shed = None
        if len(self._waiting) >= self._bound:
            lowest = min(self._waiting, key=lambda e: (PRIORITY_RANK[e.share.priority], -e.seq))
            if PRIORITY_RANK[lowest.share.priority] >= PRIORITY_RANK[share.priority]:
                return None, None
            self.remove(lowest)
            lowest.shed = True
            shed = lowest
        start = max(self._virtual, self._last_finish.get(share.tenant, 0.0))
        entry = Entry(share, start, start + 1.0 / share.weight, next(self._seq))
        self._last_finish[share.tenant] = entry.finish
        bisect.insort(self._waiting, entry, key=lambda e: e.order)
        return entry, shed

    def pop(self) -> Entry:
        """Dispatch the head: virtual time moves to its start tag."""
        entry = self._waiting.pop(0)
        self._virtual = max(self._virtual, entry.start)
        # Tenants whose tags virtual time has passed have no claim left: forget them.
        self._last_finish = {t: f for t, f in self._last_finish.items() if f > self._virtual}
        return entry

    def remove(self, entry: Entry) -> None:
        """Take out a request that leaves without being dispatched (shed, timed out, gone)."""
        if entry not in self._waiting:
            return
        self._waiting.remove(entry)
        if self._last_finish.get(entry.share.tenant) == entry.finish:
            self._last_finish[entry.share.tenant] = entry.start  # its turn is given back
