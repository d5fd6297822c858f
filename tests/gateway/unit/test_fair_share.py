"""The fair order of a saturated model's queue (pure): weights, no banked credit, shedding."""

from __future__ import annotations

from llm_gateway.fair_share import FairOrder, Share

GOLD = Share(("ns", "gold"), weight=3)
BRONZE = Share(("ns", "bronze"), weight=1)


def drain(order: FairOrder, count: int) -> list[str]:
    return [order.pop().share.tenant[1] for _ in range(count)]


def test_backlogged_tenants_leave_in_proportion_to_their_weights() -> None:
    order = FairOrder(bound=100)
    for _ in range(12):  # bronze arrived first: a FIFO queue would serve it first
        order.push(BRONZE)
    for _ in range(12):
        order.push(GOLD)
    first = drain(order, 16)
    assert first.count("gold") == 12 and first.count("bronze") == 4
    # Interleaved, not in blocks: bronze is never more than three gold turns away.
    assert first.index("bronze") <= 3
    assert all("bronze" in first[i : i + 4] for i in range(0, 16, 4))


def test_equal_weights_alternate_whatever_the_arrival_order() -> None:
    order = FairOrder(bound=100)
    a, b = Share(("ns", "a")), Share(("ns", "b"))
    for share in [a] * 5 + [b] * 5:
        order.push(share)
    assert drain(order, 6) == ["a", "b", "a", "b", "a", "b"]


def test_an_idle_tenant_banks_no_credit() -> None:
    order = FairOrder(bound=100)
    busy, late = Share(("ns", "busy")), Share(("ns", "late"))
    for _ in range(10):
        order.push(busy)
    drain(order, 8)  # busy ran alone for a while
    for _ in range(6):
        order.push(late)
        order.push(busy)
    # The latecomer gets its fair half from now on, not eight turns in a row to catch up.
    assert drain(order, 8).count("late") <= 5


def test_a_full_queue_sheds_the_newest_of_the_lowest_priority_below_the_arrival() -> None:
    order = FairOrder(bound=3)
    normal, low = Share(("ns", "n")), Share(("ns", "l"), priority="low")
    high = Share(("ns", "h"), priority="high")
    first_low = order.push(low)[0]
    order.push(normal)
    newest_low = order.push(low)[0]
    entry, shed = order.push(high)
    assert entry is not None and shed is newest_low and shed.shed
    entry, shed = order.push(normal)
    assert entry is not None and shed is first_low
    # Now only normal and high wait: another normal is refused, nothing is shed.
    assert order.push(normal) == (None, None)
    assert len(order) == 3
    # An equal priority never sheds: a full queue of lows refuses a low.
    lows = FairOrder(bound=1)
    lows.push(low)
    assert lows.push(low) == (None, None)


def test_requests_that_leave_give_their_turns_back() -> None:
    order = FairOrder(bound=10)
    a, b = Share(("ns", "a")), Share(("ns", "b"))
    order.push(a)
    gone = [order.push(a)[0], order.push(a)[0]]
    for entry in reversed(gone):  # e.g. their clients left
        assert entry is not None
        order.remove(entry)
    for share in (b, b, b, a, a):
        order.push(share)
    # a's new requests take the places the leavers had (not two behind them).
    assert drain(order, 6) == ["a", "b", "b", "a", "b", "a"]
