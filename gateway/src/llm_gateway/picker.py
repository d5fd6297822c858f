"""Picking a replica: consistent hashing with bounded load (CHWBL), a pure function.

The request's key (model + the prompt's leading characters) lands on a hash ring with virtual
nodes per replica; the walk from there takes the first usable replica whose load after this
request stays ≤ ceil(c × (total load + 1) / n) (Mirrokni et al., "Consistent Hashing with
Bounded Loads"). Requests sharing a prefix go where its KV blocks are cached until that replica
is saturated. The ring depends only on the pod names, so gateway replicas agree without talking,
and adding a replica moves only ~1/n of the keys.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from llm_gateway.directory import Replica

VIRTUAL_NODES = 100  # points per replica: keys spread within a few % of even
PickedBy = Literal["affinity", "load", "only"]


def stable_hash(text: str) -> int:
    """A hash every process agrees on (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class HashRing:
    points: tuple[int, ...]  # sorted
    owners: tuple[str, ...]  # owners[i] is the pod at points[i]
    pod_count: int

    def walk(self, key: int) -> list[str]:
        """Pods in ring order from the key's position, each once."""
        start = bisect.bisect_left(self.points, key)
        seen: dict[str, None] = {}
        count = len(self.points)
        for offset in range(count):
            seen.setdefault(self.owners[(start + offset) % count], None)
            if len(seen) == self.pod_count:
                break
        return list(seen)


@lru_cache(maxsize=256)
def ring_for(pods: tuple[str, ...]) -> HashRing:
    """The ring of a replica set (cached: it changes only when pods come and go)."""
    placed = sorted(
        (stable_hash(f"{pod}#{index}"), pod) for pod in set(pods) for index in range(VIRTUAL_NODES)
    )
    return HashRing(tuple(p for p, _ in placed), tuple(pod for _, pod in placed), len(set(pods)))


@dataclass(frozen=True)
class Pick:
    replica: Replica
    picked_by: PickedBy


def request_key(model: str, prefix: str) -> int:
    return stable_hash(f"{model}\x00{prefix}")


def load_bound(total_load: int, usable: int, load_factor: float) -> int:
    return math.ceil(load_factor * (total_load + 1) / usable)


def pick(
    replicas: Iterable[Replica],
    key: int,
    loads: Mapping[str, int],
    load_factor: float,
    avoid: Collection[str] = (),
) -> Pick | None:
    """The replica for `key`, or None when no replica is ready and not draining.

    `loads` maps pod -> requests on it (missing = 0). Pods in `avoid` (failing, or already
    tried for this request) are skipped unless nothing else is left.
    """
    replicas = list(replicas)
    serving = {r.pod: r for r in replicas if r.ready and not r.terminating}
    usable = {pod: r for pod, r in serving.items() if pod not in avoid} or serving
    if not usable:
        return None
    if len(usable) == 1:
        return Pick(next(iter(usable.values())), "only")
    ring = ring_for(tuple(sorted(r.pod for r in replicas)))
    order = [pod for pod in ring.walk(key) if pod in usable]
    total = sum(loads.get(pod, 0) for pod in usable)
    bound = load_bound(total, len(usable), load_factor)
    for position, pod in enumerate(order):
        if loads.get(pod, 0) + 1 <= bound:
            return Pick(usable[pod], "affinity" if position == 0 else "load")
    # Unreachable with c ≥ 1 (the least loaded is under the mean), kept as the safe answer.
    least = min(order, key=lambda pod: loads.get(pod, 0))
    return Pick(usable[least], "load")
