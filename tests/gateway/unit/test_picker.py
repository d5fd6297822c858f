"""CHWBL: consistent hashing with bounded load, as a pure function."""

from __future__ import annotations

import math
from collections import Counter

from llm_gateway.directory import Replica
from llm_gateway.picker import load_bound, pick, request_key


def replicas(*names: str, ready: bool = True, terminating: bool = False) -> list[Replica]:
    return [Replica(n, f"http://{n}:8000", ready, terminating) for n in names]


KEYS = [request_key("m", f"system prompt {i}") for i in range(4000)]


def owners(pool: list[Replica], keys: list[int] = KEYS) -> list[str]:
    chosen = [pick(pool, key, {}, 1.25) for key in keys]
    assert all(c is not None and c.picked_by == "affinity" for c in chosen)
    return [c.replica.pod for c in chosen if c is not None]


def test_idle_keys_spread_evenly_over_replicas() -> None:
    counts = Counter(owners(replicas("a", "b", "c", "d")))
    assert set(counts) == {"a", "b", "c", "d"}
    # 100 virtual nodes each: every replica within ±30 % of its fair quarter.
    assert all(0.7 * 1000 <= n <= 1.3 * 1000 for n in counts.values()), counts


def test_adding_a_replica_moves_only_about_one_key_in_n() -> None:
    before = owners(replicas("a", "b", "c", "d"))
    after = owners(replicas("a", "b", "c", "d", "e"))
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert all(new == "e" for _, new in moved)  # keys only move to the newcomer
    assert 0.1 <= len(moved) / len(KEYS) <= 0.3  # ~1/5


def test_every_gateway_agrees_whatever_the_replica_order() -> None:
    pool = replicas("a", "b", "c")
    assert owners(pool) == owners(list(reversed(pool)))


def test_same_prefix_same_replica_other_model_may_differ() -> None:
    pool = replicas("a", "b", "c", "d")
    key = request_key("m", "x")
    assert pick(pool, key, {}, 1.25) == pick(pool, key, {}, 1.25)
    by_model = {owners(pool, [request_key(f"m{i}", "x")])[0] for i in range(40)}
    assert len(by_model) > 1  # the model is part of the key


def test_a_saturated_affinity_replica_overflows_and_the_bound_holds() -> None:
    pool = replicas("a", "b", "c", "d")
    key = KEYS[0]
    loads: dict[str, int] = {}
    picked_by: list[str] = []
    for _ in range(200):  # one hot prefix, nothing finishes
        chosen = pick(pool, key, loads, 1.25)
        assert chosen is not None
        total = sum(loads.values())
        bound = math.ceil(1.25 * (total + 1) / 4)
        loads[chosen.replica.pod] = loads.get(chosen.replica.pod, 0) + 1
        assert max(loads.values()) <= bound
        picked_by.append(chosen.picked_by)
    assert picked_by[0] == "affinity" and "load" in picked_by
    assert max(loads.values()) <= math.ceil(1.25 * 200 / 4)


def test_the_affinity_replica_wins_while_under_the_bound() -> None:
    pool = replicas("a", "b", "c", "d")
    home = owners(pool, KEYS[:1])[0]
    loads = {"a": 3, "b": 3, "c": 3, "d": 3}
    chosen = pick(pool, KEYS[0], loads, 1.25)
    assert chosen is not None and chosen.replica.pod == home and chosen.picked_by == "affinity"
    loads[home] = 10
    chosen = pick(pool, KEYS[0], loads, 1.25)
    assert chosen is not None and chosen.replica.pod != home and chosen.picked_by == "load"


def test_load_bound_formula() -> None:
    assert load_bound(total_load=0, usable=4, load_factor=1.25) == 1
    assert load_bound(total_load=11, usable=4, load_factor=1.25) == 4
    assert load_bound(total_load=11, usable=4, load_factor=1.0) == 3


def test_skips_not_ready_terminating_and_avoided_replicas() -> None:
    pool = [
        *replicas("ready"), *replicas("loading", ready=False),
        *replicas("draining", terminating=True), *replicas("failing"),
    ]  # fmt: skip
    for key in KEYS[:200]:
        chosen = pick(pool, key, {}, 1.25, avoid={"failing"})
        assert chosen is not None and chosen.replica.pod == "ready"
        assert chosen.picked_by == "only"


def test_avoided_replicas_are_the_last_resort_and_no_serving_replica_is_none() -> None:
    chosen = pick(replicas("a"), KEYS[0], {}, 1.25, avoid={"a"})
    assert chosen is not None and chosen.replica.pod == "a"
    assert pick(replicas("a", ready=False), KEYS[0], {}, 1.25) is None
    assert pick([], KEYS[0], {}, 1.25) is None


def test_a_replica_leaving_moves_only_its_own_keys() -> None:
    pool = replicas("a", "b", "c", "d")
    before = owners(pool)
    pool[1] = Replica("b", pool[1].url, ready=False, terminating=False)
    after = owners(pool)
    assert all(old == new for old, new in zip(before, after, strict=True) if old != "b")
