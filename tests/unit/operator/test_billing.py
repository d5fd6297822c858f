"""`llmops bill`'s pure core (issue 23): the month window, the PromQL, bill lines and the table.
The same code against a real Prometheus: tests/observability/test_chargeback_live.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llm_operator.billing import (
    BillError,
    Line,
    bill_lines,
    bill_table,
    month_window,
    next_month,
    queries,
)

NOW = datetime(2026, 12, 3, 21, 30, tzinfo=UTC)


def test_a_past_month_ends_at_its_last_instant() -> None:
    window = month_window("2026-11", NOW)
    assert window.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert window.end == datetime(2026, 12, 1, tzinfo=UTC) and window.complete
    assert window.seconds == 30 * 86400
    december = month_window("2025-12", NOW)
    assert december.end == datetime(2026, 1, 1, tzinfo=UTC) and december.seconds == 31 * 86400
    assert next_month(datetime(2028, 2, 1, tzinfo=UTC)) == datetime(2028, 3, 1, tzinfo=UTC)


def test_the_current_month_runs_until_now() -> None:
    window = month_window(None, NOW)
    assert window.month == "2026-12" and window.end == NOW and not window.complete
    assert window.seconds == 2 * 86400 + 21 * 3600 + 30 * 60


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "26-11", "2026-1", "november", "2027-01"])
def test_bad_or_future_months_are_one_line_errors(month: str) -> None:
    with pytest.raises(BillError, match="--month"):
        month_window(month, NOW)


def test_queries_sum_increase_over_the_window_by_tenant() -> None:
    window = month_window("2026-11", NOW)
    built = queries(window, None)
    assert built["dollars"] == (
        "sum by (namespace, tenant, model) (increase(llm_gateway_tenant_dollars_total[2592000s]))"
    )
    assert "by (namespace, tenant, model, kind)" in built["tokens"]
    assert "llm_gateway_tenant_requests_total[" in built["requests"]
    scoped = queries(window, "team-a")
    assert all('{namespace="team-a"}[' in expr for expr in scoped.values())


@pytest.mark.parametrize("namespace", ['a"} or vector(1) #', "Team-A", "-a", "a" * 64, ""])
def test_a_namespace_that_is_not_a_name_is_refused(namespace: str) -> None:
    with pytest.raises(BillError, match="--namespace"):
        queries(month_window("2026-11", NOW), namespace)


def _sample(value: str, **labels: str) -> dict[str, object]:
    return {"metric": labels, "value": [1764547200, value]}


def test_bill_lines_merge_columns_and_sort() -> None:
    lines = bill_lines(
        {
            "requests": [_sample("10", namespace="b", tenant="t", model="m")],
            "tokens": [
                _sample("100", namespace="b", tenant="t", model="m", kind="prompt"),
                _sample("30", namespace="b", tenant="t", model="m", kind="completion"),
            ],
            "dollars": [
                _sample("2.5", namespace="b", tenant="t", model="m"),
                _sample("0.75", namespace="a", model="m"),  # no tenant label: no key
            ],
        }
    )
    assert lines == [
        Line("a", "", "m", dollars=0.75),
        Line("b", "t", "m", 10, 100, 30, 2.5),
    ]


def test_table_has_tenant_totals_model_lines_and_a_grand_total() -> None:
    window = month_window("2026-11", NOW)
    table = bill_table(
        window,
        [
            Line("team-a", "bot", "chat", 1000, 20000, 5000, 12.5),
            Line("team-a", "bot", "code", 10, 200, 50, 0.126),
            Line("team-b", "", "chat", 1, 2, 3, 0.004),
        ],
    ).splitlines()
    assert table[0] == "Bill for 2026-11 (UTC, 2026-11-01 to month end)"
    rows = {line.split()[0]: line.split()[1:] for line in table[3:] if not line.startswith("-")}
    assert rows["team-a/bot"] == ["1,010", "20,200", "5,050", "$12.63"]
    assert rows["code"] == ["10", "200", "50", "$0.13"]
    assert rows["team-b/(no"] == ["key)", "1", "2", "3", "$0.00"]
    assert rows["total"] == ["1,011", "20,202", "5,053", "$12.63"]
    assert len({len(line) for line in table[1:3]}) == 1  # the header is as wide as the rule


def test_a_month_without_traffic_says_so() -> None:
    window = month_window(None, NOW)
    assert bill_table(window, []).splitlines() == [
        "Bill for 2026-12 (UTC, 2026-12-01 to 2026-12-03 21:30 UTC)",
        "no tenant traffic recorded",
    ]
